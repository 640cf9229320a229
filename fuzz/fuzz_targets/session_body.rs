//! Fuzz target: `mxgate::session::body::DataDecoder` on arbitrary bytes must not panic,
//! must end DATA only right after `<CRLF>.<CRLF>` (or at a leading `.<CRLF>`), and must give
//! the same result whole and split at an arbitrary offset. Replayed on stable by
//! `tests/smuggling.rs::fuzz_corpora_replay_through_the_session_parsers`.
//!
//! Run: `cargo install cargo-fuzz && cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run session_body`
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::session::body::DataDecoder;

fuzz_target!(|data: &[u8]| {
    let mut whole = DataDecoder::new(1 << 16);
    let end = whole.feed(data);
    if let Some(n) = end {
        let ended = &data[..n];
        assert!(ended.ends_with(b"\r\n.\r\n") || ended == b".\r\n", "{ended:?}");
    }
    let whole = whole.finish();

    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut parts = DataDecoder::new(1 << 16);
    let first = parts.feed(&data[..split]);
    let second = match first {
        Some(n) => Some(n),
        None => parts.feed(&data[split..]).map(|n| split + n),
    };
    assert_eq!(second, end);
    assert_eq!(parts.finish(), whole);
});
