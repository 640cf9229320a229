//! Fuzz target: `mxgate::session::command::parse` and the line splitter on arbitrary bytes
//! must not panic; a parsed RCPT is never a relaying trick (no `%`, `!`, quote or address
//! literal survives into an `Address`). Replayed on stable by
//! `tests/smuggling.rs::fuzz_corpora_replay_through_the_session_parsers`.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run session_command`
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::session::command::{self, Command, LineReader, Scan};

fuzz_target!(|data: &[u8]| {
    if let Ok(Command::Rcpt(r)) = command::parse(data) {
        assert!(!r.to.local.contains(['%', '!', '"', '@']), "{:?}", r.to);
        assert!(!r.to.domain.starts_with('['), "{:?}", r.to);
        assert!(!r.to.domain.ends_with('.'), "{:?}", r.to);
    }
    // The splitter never returns more than it was given, and never a line over the limit.
    let mut reader = LineReader::new(64);
    let mut rest = data;
    loop {
        match reader.scan(rest) {
            Scan::NeedMore { discard } => {
                assert!(discard <= rest.len());
                break;
            }
            Scan::Line { len } => {
                assert!(len <= 64 && len <= rest.len());
                let _ = command::parse(&rest[..len]);
                rest = &rest[len..];
            }
            Scan::TooLong { consumed } => {
                assert!(consumed <= rest.len() && consumed > 0);
                rest = &rest[consumed..];
            }
        }
    }
});
