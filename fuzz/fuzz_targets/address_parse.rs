//! Fuzz target: the RFC 5321 mailbox syntax check (`mxgate::session::command::mailbox`)
//! and `Address::parse` on arbitrary text must not panic, and must agree: a mailbox that
//! splits gives back its input; every plain `Address` (no `[...]` literal) is also
//! well-formed syntax, so no address can skip the `501 5.1.3` check on its way to routing;
//! and a RCPT the command parser accepts is well-formed. Replayed on stable by
//! `tests/smuggling.rs::fuzz_corpora_replay_through_the_session_parsers`.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run address_parse`
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::envelope::Address;
use mxgate::session::command::{self, Command, mailbox};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(m) = mailbox::check(text) {
        assert_eq!(format!("{}@{}", m.local, m.domain), text);
        assert_eq!(m.quoted, m.local.starts_with('"'));
        assert_eq!(m.literal, m.domain.starts_with('['));
    }
    if let Some(a) = Address::parse(text)
        && !a.domain.starts_with('[')
    {
        assert!(mailbox::check(text).is_some(), "{text:?} parses but is not RFC 5321");
    }
    let line = format!("RCPT TO:<{text}>");
    if let Ok(Command::Rcpt(r)) = command::parse(line.as_bytes()) {
        assert!(mailbox::check(&r.to.to_string()).is_some(), "{:?}", r.to);
        assert!(!r.to.local.contains(['%', '!', '"', '@']), "{:?}", r.to);
    }
});
