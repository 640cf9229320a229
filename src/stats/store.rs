//! The statistics' family (`stats`) of the server's one RocksDB ([`crate::db`]): hourly
//! counters and the events outbox. Writes here go to the shared WAL without fsync: they
//! become durable with the queue's next group commit fsync (or the OS's writeback), so a
//! process crash keeps them and a power loss may lose the last moment of counts —
//! acceptable for statistics, and counting never adds an fsync of its own.
//!
//! | key                                   | value                                   |
//! |---------------------------------------|-----------------------------------------|
//! | `h/<hour u32><kind u8><dims>`         | i64 LE, summed by the merge operator    |
//! | `o/<id u64>`                          | one pending event (JSON), oldest first  |
//! | `i/<queue id u64><rcpt u16>`          | `[1][ms u64]` + sending IP of a delivered recipient |
//! | `m/<Message-ID>`                      | `[1][ms u64]` + queue id of a delivered message |
//! | `u/<domain>`                          | a sending domain's suspension (JSON)    |
//! | `w/<domain>`                          | its window of recent sends (bitset)     |
//!
//! `hour` = hours since the epoch (UTC), big-endian so a range of hours is a key range;
//! `kind` = `D` delivered, `B` bounced; `dims` = the dimensions joined by 0x1F.

use std::path::Path;

use super::{BounceInfo, Dims};
use crate::db::{Cf, Column, Db, DbError, Family, Write};
pub use crate::db::{decode_i64 as decode, prefix_end};

pub const HOURS: &[u8] = b"h/";
pub const OUTBOX: &[u8] = b"o/";
/// `i/<queue id><rcpt>` → the IP a relayed recipient left from, for DSNs that come later.
pub const SENT_FROM: &[u8] = b"i/";
/// `m/<Message-ID>` → the queue id of a relayed message, for complaints that quote only it.
pub const MESSAGE_IDS: &[u8] = b"m/";
/// `u/<domain>` → a suspended sending domain (`suspension`).
pub const SUSPENSIONS: &[u8] = b"u/";
/// `w/<domain>` → the domain's window of recent sends (`suspension`).
pub const SEND_WINDOWS: &[u8] = b"w/";
/// `U/<seq>` → a suspension change not yet in the cluster's Redis (`suspension`).
pub const SUSPENSION_OUTBOX: &[u8] = b"U/";
pub const SEP: char = '\u{1f}';
/// `kind` of a delivered recipient's counter.
pub const DELIVERED: u8 = b'D';
/// `kind` of a bounced recipient's counter.
pub const BOUNCED: u8 = b'B';

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Db(DbError),
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("statistics store is closed")]
    Closed,
}

impl From<DbError> for StatsError {
    fn from(e: DbError) -> StatsError {
        match e {
            DbError::Closed => StatsError::Closed,
            DbError::Rocks(e) => StatsError::Rocks(e),
            e => StatsError::Db(e),
        }
    }
}

/// Raw entries as [`Store::first`] returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Shared handle on the `stats` family (counters merge with the family's i64 add
/// operator); `close` makes later calls fail with `Closed`.
#[derive(Clone)]
pub struct Store {
    col: Column,
}

impl Store {
    /// The `stats` family of the server's database.
    pub fn in_db(db: &Db) -> Store {
        Store {
            col: Column::new(db, Family::Stats),
        }
    }

    /// A store alone in a database of its own in `dir` (tests), closed with it.
    pub fn open(dir: &Path) -> Result<Store, StatsError> {
        Ok(Store {
            col: Column::standalone(dir, Family::Stats)?,
        })
    }

    pub fn with<T>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<T, StatsError>,
    ) -> Result<T, StatsError> {
        self.col.with(f)
    }

    /// Adds `n` to a counter.
    pub fn add(&self, key: &[u8], n: i64) -> Result<(), StatsError> {
        self.with(|db| Ok(db.merge(key, n.to_le_bytes())?))
    }

    /// Visits `(key, value)` for keys in `[start, end)`.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StatsError> {
        self.with(|db| {
            for item in db.scan(start, end.to_vec()) {
                let (k, v) = item?;
                f(&k, &v);
            }
            Ok(())
        })
    }

    /// The first `n` entries with `prefix`.
    pub fn first(&self, prefix: &[u8], n: usize) -> Result<Entries, StatsError> {
        let mut out = Vec::new();
        let end = prefix_end(prefix);
        self.with(|db| {
            for item in db.scan(prefix, end).take(n) {
                let (k, v) = item?;
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The last key with `prefix`.
    pub fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StatsError> {
        let end = prefix_end(prefix);
        self.with(|db| {
            let mut it = db.scan_back(&end);
            match it.next() {
                Some(item) => {
                    let (k, _) = item?;
                    Ok(k.starts_with(prefix).then(|| k.to_vec()))
                }
                None => Ok(None),
            }
        })
    }

    pub fn count(&self, prefix: &[u8]) -> Result<u64, StatsError> {
        let mut n = 0;
        self.scan(prefix, &prefix_end(prefix), |_, _| n += 1)?;
        Ok(n)
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StatsError> {
        self.with(|db| Ok(db.put(key, value)?))
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), StatsError> {
        self.with(|db| Ok(db.delete(key)?))
    }

    /// Later calls fail with `Closed` (a standalone store also closes its database).
    /// Idempotent.
    pub fn close(&self) {
        self.col.close();
    }
}

pub(super) fn delivered_key(at_ms: u64, d: &Dims) -> Vec<u8> {
    hour_key(super::hour(at_ms), DELIVERED, &dims_of(d))
}

pub(super) fn bounced_key(at_ms: u64, d: &Dims, b: &BounceInfo) -> Vec<u8> {
    let mut dims = dims_of(d).to_vec();
    let kind = if b.permanent {
        "permanent"
    } else {
        "transient"
    };
    dims.extend([b.category.as_str(), &b.reply_code, &b.status, kind]);
    hour_key(super::hour(at_ms), BOUNCED, &dims)
}

/// One more on counter `key`, by the `stats` family's merge operator.
pub(super) fn count_write(key: Vec<u8>) -> Write {
    Write::Merge(Family::Stats, key, 1i64.to_le_bytes().to_vec())
}

fn dims_of(d: &Dims) -> [&str; 4] {
    [&d.sending_domain, &d.email_type, &d.sending_ip, &d.provider]
}

/// `h/<hour>` (+ kind and dims when given).
pub fn hour_key(hour: u32, kind: u8, dims: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(HOURS);
    k.extend_from_slice(&hour.to_be_bytes());
    k.push(kind);
    let joined: Vec<String> = dims.iter().map(|d| d.replace(SEP, " ")).collect();
    k.extend_from_slice(joined.join(&SEP.to_string()).as_bytes());
    k
}

/// `h/` key → (hour, kind, dims).
pub fn parse_hour_key(k: &[u8]) -> Option<(u32, u8, Vec<String>)> {
    let rest = k.strip_prefix(HOURS)?;
    if rest.len() < 5 {
        return None;
    }
    let hour = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let kind = rest[4];
    let dims = String::from_utf8_lossy(&rest[5..])
        .split(SEP)
        .map(str::to_string)
        .collect();
    Some((hour, kind, dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_keys_round_trip_and_sort_by_hour() {
        let a = hour_key(10, b'D', &["example.test", "transactional", "", "gmail"]);
        let b = hour_key(11, b'B', &["a", "b"]);
        assert!(a < b);
        let (h, kind, dims) = parse_hour_key(&a).expect("parse");
        assert_eq!((h, kind), (10, b'D'));
        assert_eq!(dims, ["example.test", "transactional", "", "gmail"]);
    }

    #[test]
    fn counters_add_up_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let k = hour_key(1, b'D', &["x"]);
        s.add(&k, 2).expect("add");
        s.add(&k, 3).expect("add");
        s.close();
        let s = Store::open(dir.path()).expect("reopen");
        let mut got = 0;
        s.scan(HOURS, &prefix_end(HOURS), |_, v| got = decode(v))
            .expect("scan");
        assert_eq!(got, 5);
    }
}
