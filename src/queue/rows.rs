//! Reading the queue's rows: a key range ([`scan`]) and a message's meta ([`read_meta`]).
//! Split from [`store`](super::store) because [`retention`](super::retention) reads them
//! too, and the store calls retention on every write to keep a message's `r/` entry in
//! step: with the reads here, the two no longer import each other.

use super::keys;
use super::{QueuedMessage, StoreError};
use crate::db::{Cf, Entry};
use crate::envelope::QueueId;

/// Iterates the keys (and values) starting with `prefix`, from `start` (≥ prefix).
pub fn scan<'a>(db: Cf<'a>, prefix: &[u8], start: &[u8]) -> impl Iterator<Item = Entry> + 'a {
    db.scan(start, keys::prefix_end(prefix))
}

pub(super) fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    let (kind, rest) = key.split_at(key.len().min(2));
    StoreError::Corrupt {
        key: format!("{}{}", String::from_utf8_lossy(kind), hex(rest)),
        reason: reason.to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub fn read_meta(db: Cf<'_>, id: QueueId) -> Result<Option<QueuedMessage>, StoreError> {
    let key = keys::meta(id);
    match db.get_pinned(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| corrupt(&key, e)),
    }
}
