//! Fuzz target: `mxgate::bounce::parse` on arbitrary bytes must not panic and must stay
//! consistent (`is_bounce` iff kind Bounce, bounded recipient count). The same corpus is
//! replayed on stable by `tests/bounce.rs::fuzz_corpus_replays_through_the_parser`.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run bounce_parse`
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::bounce::{self, ReportKind};

fuzz_target!(|data: &[u8]| {
    let report = bounce::parse(data);
    assert_eq!(report.is_bounce, report.kind == ReportKind::Bounce);
    assert!(report.recipients.len() <= 400);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bounce::classify_reply(None, None, text);
    }
});
