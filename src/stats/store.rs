//! RocksDB of the statistics (`<data_dir>/stats`): hourly counters and the events outbox.
//! Separate from the queue's store so that counting never competes with the queue's fsync'd
//! group commits; writes here go to the WAL without fsync (a process crash keeps them, a
//! power loss may lose the last second of counts — acceptable for statistics).
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
use std::sync::{Arc, PoisonError, RwLock};

use rocksdb::{DB, Direction, IteratorMode, MergeOperands, Options, ReadOptions};

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
pub const SEP: char = '\u{1f}';

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot create statistics directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("statistics store is closed")]
    Closed,
}

/// Raw entries as [`Store::first`] returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Shared handle; `close` releases the DB (and its lock) for a restart in the same process.
#[derive(Clone)]
pub struct Store {
    db: Arc<RwLock<Option<DB>>>,
}

fn add_i64(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut sum = existing.map_or(0, decode);
    for op in operands {
        sum = sum.saturating_add(decode(op));
    }
    Some(sum.to_le_bytes().to_vec())
}

pub fn decode(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StatsError> {
        std::fs::create_dir_all(dir).map_err(|source| StatsError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(1);
        opts.set_merge_operator_associative("mxgate_add_i64", add_i64);
        let db = DB::open(&opts, dir)?;
        Ok(Store {
            db: Arc::new(RwLock::new(Some(db))),
        })
    }

    pub fn with<T>(&self, f: impl FnOnce(&DB) -> Result<T, StatsError>) -> Result<T, StatsError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(StatsError::Closed),
        }
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
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(end.to_vec());
            for item in db.iterator_opt(IteratorMode::From(start, Direction::Forward), ro) {
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
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(end);
            for item in db
                .iterator_opt(IteratorMode::From(prefix, Direction::Forward), ro)
                .take(n)
            {
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
            let mut it = db.iterator(IteratorMode::From(&end, Direction::Reverse));
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

    /// Flushes and closes; later calls fail with `Closed`. Idempotent.
    pub fn close(&self) {
        let db = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = db
            && let Err(e) = db.flush()
        {
            tracing::warn!(error = %e, "statistics flush at close failed");
        }
    }
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    end
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
