//! RocksDB key layout of the queue. One keyspace, each key prefixed by its kind; every number
//! is big-endian so that lexicographic key order is numeric order (and [`QueueId`] being
//! time-ordered makes `m/` scans run in arrival order).
//!
//! | key                                     | value                          |
//! |-----------------------------------------|--------------------------------|
//! | `m/<id>`                                | message meta (JSON of [`QueuedMessage`](super::QueuedMessage)) |
//! | `b/<id>`                                | raw message, written once      |
//! | `d/<due_ms u64><id><rcpt u16>`          | empty: schedule index, pending recipients only |
//! | `s/<state u8><id><rcpt u16>`            | empty: per-state index (admin lists, counts) |
//! | `B/<id>`                                | empty: a DSN not yet processed by the bounce stage |
//! | `r/<final_ms u64><id>`                  | one state byte per recipient: retention index |
//! | `v/<name>`                              | store format markers (e.g. the retention index is complete) |
//!
//! Invariants kept by every batch: a recipient in `queued`/`deferred` has exactly one `d/`
//! key, at its `next_attempt_ms`; every recipient has exactly one `s/` key, for its state;
//! a message has an `r/` key exactly when all its recipients are final and it holds no
//! unread DSN (`B/`), at the time of its last transition, and the key's value lists the
//! recipients' states (so the purge deletes their `s/` keys without reading the meta).

pub use crate::db::prefix_end;
use crate::envelope::QueueId;

use super::RcptState;

pub const META: &[u8] = b"m/";
pub const BODY: &[u8] = b"b/";
pub const DUE: &[u8] = b"d/";
pub const STATE: &[u8] = b"s/";
pub const BOUNCE: &[u8] = b"B/";
pub const RETAIN: &[u8] = b"r/";
/// Written once every final message of a store made before retention has its `r/` key.
pub const RETAIN_INDEXED: &[u8] = b"v/retention-index";

/// A recipient: message id and index into its `recipients`.
pub type RcptKey = (QueueId, u16);

fn with_id(prefix: &[u8], id: QueueId) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(prefix);
    k[2..].copy_from_slice(&id.to_bytes());
    k
}

pub fn meta(id: QueueId) -> [u8; 10] {
    with_id(META, id)
}

pub fn body(id: QueueId) -> [u8; 10] {
    with_id(BODY, id)
}

pub fn bounce(id: QueueId) -> [u8; 10] {
    with_id(BOUNCE, id)
}

pub fn due(due_ms: u64, id: QueueId, rcpt: u16) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..2].copy_from_slice(DUE);
    k[2..10].copy_from_slice(&due_ms.to_be_bytes());
    k[10..18].copy_from_slice(&id.to_bytes());
    k[18..].copy_from_slice(&rcpt.to_be_bytes());
    k
}

/// `d/` key → (due_ms, id, rcpt).
pub fn parse_due(k: &[u8]) -> Option<(u64, QueueId, u16)> {
    if k.len() != 20 || !k.starts_with(DUE) {
        return None;
    }
    let due = u64::from_be_bytes(k[2..10].try_into().ok()?);
    let id = QueueId::from_bytes(&k[10..18])?;
    let rcpt = u16::from_be_bytes(k[18..20].try_into().ok()?);
    Some((due, id, rcpt))
}

pub fn state_byte(st: RcptState) -> u8 {
    RcptState::ALL.iter().position(|s| *s == st).unwrap_or(0) as u8
}

pub fn state_from_byte(b: u8) -> Option<RcptState> {
    RcptState::ALL.get(usize::from(b)).copied()
}

/// `s/<state>`: the prefix of one state's index.
pub fn state_prefix(st: RcptState) -> [u8; 3] {
    [STATE[0], STATE[1], state_byte(st)]
}

pub fn state(st: RcptState, id: QueueId, rcpt: u16) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..3].copy_from_slice(&state_prefix(st));
    k[3..11].copy_from_slice(&id.to_bytes());
    k[11..].copy_from_slice(&rcpt.to_be_bytes());
    k
}

/// `s/` key → (state, id, rcpt).
pub fn parse_state(k: &[u8]) -> Option<(RcptState, QueueId, u16)> {
    if k.len() != 13 || !k.starts_with(STATE) {
        return None;
    }
    let st = *RcptState::ALL.get(usize::from(k[2]))?;
    let id = QueueId::from_bytes(&k[3..11])?;
    let rcpt = u16::from_be_bytes(k[11..13].try_into().ok()?);
    Some((st, id, rcpt))
}

/// `r/<final_ms>`: where the retention entries of messages finished at `final_ms` start.
pub fn retain_from(final_ms: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(RETAIN);
    k[2..].copy_from_slice(&final_ms.to_be_bytes());
    k
}

pub fn retain(final_ms: u64, id: QueueId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..10].copy_from_slice(&retain_from(final_ms));
    k[10..].copy_from_slice(&id.to_bytes());
    k
}

/// `r/` key → (final_ms, id).
pub fn parse_retain(k: &[u8]) -> Option<(u64, QueueId)> {
    if k.len() != 18 || !k.starts_with(RETAIN) {
        return None;
    }
    let ms = u64::from_be_bytes(k[2..10].try_into().ok()?);
    Some((ms, QueueId::from_bytes(&k[10..])?))
}

/// The id in an `m/`, `b/` or `B/` key.
pub fn parse_id(k: &[u8]) -> Option<QueueId> {
    if k.len() != 10 {
        return None;
    }
    QueueId::from_bytes(&k[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_then_id_then_recipient() {
        let a = due(1_000, QueueId(5), 1);
        let b = due(1_000, QueueId(5), 2);
        let c = due(1_000, QueueId(6), 0);
        let d = due(256_000, QueueId(1), 0);
        assert!(a < b && b < c && c < d);
        assert_eq!(parse_due(&d), Some((256_000, QueueId(1), 0)));
    }

    #[test]
    fn state_keys_round_trip_for_every_state() {
        for st in RcptState::ALL {
            let k = state(st, QueueId(42), 7);
            assert!(k.starts_with(&state_prefix(st)));
            assert_eq!(parse_state(&k), Some((st, QueueId(42), 7)));
        }
    }

    #[test]
    fn retain_keys_sort_by_time_and_round_trip() {
        let a = retain(1_000, QueueId(9));
        let b = retain(2_000, QueueId(1));
        assert!(a < b && retain_from(1_001).as_slice() < b.as_slice());
        assert!(a.starts_with(&retain_from(1_000)));
        assert_eq!(parse_retain(&b), Some((2_000, QueueId(1))));
        for st in RcptState::ALL {
            assert_eq!(state_from_byte(state_byte(st)), Some(st));
        }
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"d/"), b"d0".to_vec());
        assert_eq!(prefix_end(&[b's', b'/', 0xff]), b"s0".to_vec());
        assert!(meta(QueueId(u64::MAX)).as_slice() < prefix_end(META).as_slice());
    }
}
