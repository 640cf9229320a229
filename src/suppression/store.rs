//! The list's storage: the `suppressions` family of the server's one RocksDB
//! ([`crate::db`]), one key `s/<address>` per entry holding the JSON of a [`Suppression`],
//! every write synced before it returns, and the in-memory set of addresses the RCPT check
//! reads.
//!
//! Split from [`super`] because this is the only code that touches RocksDB or the locks
//! keeping the store and the set in step; the entry types, the rule of which bounces
//! suppress and the address normalisation the API and CLI share stay there.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Added, Source, SuppressError, Suppression, cut, normalize_address};
use crate::clock::Clock;
use crate::db::{Cf, Column, Db, Entry, Family, prefix_end};

/// Handle to the list; cheap to clone.
#[derive(Clone)]
pub struct SuppressionList {
    inner: Arc<Inner>,
}

struct Inner {
    col: Column,
    /// Every listed address (the RCPT fast path).
    addresses: RwLock<HashSet<String>>,
    /// Serialises add/remove so the store and the in-memory set never disagree.
    writes: Mutex<()>,
    clock: Clock,
}

const PREFIX: &[u8] = b"s/";

fn key(address: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(address.as_bytes());
    k
}

impl SuppressionList {
    /// The list in the `suppressions` family of the server's database, its addresses
    /// loaded into memory.
    pub fn in_db(db: &Db, clock: Clock) -> Result<SuppressionList, SuppressError> {
        SuppressionList::load(Column::new(db, Family::Suppressions), clock)
    }

    /// A list alone in a database of its own in `dir` (tests), closed with it.
    pub fn open(dir: &Path, clock: Clock) -> Result<SuppressionList, SuppressError> {
        SuppressionList::load(Column::standalone(dir, Family::Suppressions)?, clock)
    }

    fn load(col: Column, clock: Clock) -> Result<SuppressionList, SuppressError> {
        let mut addresses = HashSet::new();
        col.with(|db| {
            for entry in scan(db, PREFIX) {
                let (k, _) = entry?;
                addresses.insert(String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned());
            }
            Ok::<_, SuppressError>(())
        })?;
        tracing::info!(entries = addresses.len(), "suppression list loaded");
        Ok(SuppressionList {
            inner: Arc::new(Inner {
                col,
                addresses: RwLock::new(addresses),
                writes: Mutex::new(()),
                clock,
            }),
        })
    }

    /// Is `address` suppressed? A hash lookup in memory, safe to call on the RCPT path.
    pub fn is_suppressed(&self, address: &str) -> bool {
        let Some(a) = normalize_address(address) else {
            return false;
        };
        self.inner
            .addresses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&a)
    }

    /// Number of listed addresses.
    pub fn len(&self) -> usize {
        self.inner
            .addresses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<T, SuppressError>,
    ) -> Result<T, SuppressError> {
        self.inner.col.with(f)
    }

    /// The entry for `address`, if listed. Blocking (a RocksDB read).
    pub fn get(&self, address: &str) -> Result<Option<Suppression>, SuppressError> {
        let Some(a) = normalize_address(address) else {
            return Ok(None);
        };
        self.with_db(|db| match db.get_pinned(key(&a))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| SuppressError::Corrupt { address: a, source }),
        })
    }

    /// Up to `limit` entries in address order, starting after `after` (paging), optionally
    /// only those of one `source`. Blocking (a RocksDB scan).
    pub fn list(
        &self,
        source: Option<Source>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Suppression>, SuppressError> {
        self.with_db(|db| {
            let mut out = Vec::new();
            let start = after.map_or_else(
                || PREFIX.to_vec(),
                |a| {
                    let mut k = key(&a.to_lowercase());
                    k.push(0);
                    k
                },
            );
            for entry in db.scan(&start, prefix_end(PREFIX)) {
                let (k, v) = entry?;
                let s: Suppression =
                    serde_json::from_slice(&v).map_err(|source| SuppressError::Corrupt {
                        address: String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned(),
                        source,
                    })?;
                if source.is_none_or(|want| s.source == want) {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Adds (or replaces) an entry; synced to disk before it returns. Blocking. An automatic
    /// entry (bounce, complaint) does not overwrite one an operator made.
    pub fn add_blocking(
        &self,
        address: &str,
        reason: &str,
        source: Source,
        detail: Option<&str>,
    ) -> Result<(Added, Suppression), SuppressError> {
        let a = normalize_address(address)
            .ok_or_else(|| SuppressError::BadAddress(address.chars().take(300).collect()))?;
        let _serial = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let existing = self.get(&a)?;
        if let Some(old) = existing.as_ref().filter(|old| {
            old.source == Source::Manual && matches!(source, Source::Bounce | Source::Complaint)
        }) {
            return Ok((Added::Kept, old.clone()));
        }
        let entry = Suppression {
            address: a.clone(),
            reason: cut(reason),
            source,
            created_ms: self.inner.clock.now_ms(),
            detail: detail.map(cut).filter(|d| !d.is_empty()),
        };
        let value = serde_json::to_vec(&entry).map_err(|source| SuppressError::Corrupt {
            address: a.clone(),
            source,
        })?;
        self.with_db(|db| Ok(db.put_synced(key(&a), value)?))?;
        self.inner
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(a);
        let added = if existing.is_some() {
            Added::Replaced
        } else {
            Added::New
        };
        Ok((added, entry))
    }

    /// Removes `address`; true when it was listed. Synced before it returns. Blocking.
    pub fn remove_blocking(&self, address: &str) -> Result<bool, SuppressError> {
        let a = normalize_address(address)
            .ok_or_else(|| SuppressError::BadAddress(address.chars().take(300).collect()))?;
        let _serial = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let was = self.get(&a)?.is_some();
        if was {
            self.with_db(|db| Ok(db.delete_synced(key(&a))?))?;
        }
        self.inner
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&a);
        Ok(was)
    }

    /// [`add_blocking`](Self::add_blocking) off the async runtime's threads.
    pub async fn add(
        &self,
        address: &str,
        reason: &str,
        source: Source,
        detail: Option<&str>,
    ) -> Result<(Added, Suppression), SuppressError> {
        let (me, address, reason, detail) = (
            self.clone(),
            address.to_owned(),
            reason.to_owned(),
            detail.map(str::to_owned),
        );
        tokio::task::spawn_blocking(move || {
            me.add_blocking(&address, &reason, source, detail.as_deref())
        })
        .await
        .map_err(|e| SuppressError::Task(e.to_string()))?
    }

    /// [`remove_blocking`](Self::remove_blocking) off the async runtime's threads.
    pub async fn remove(&self, address: &str) -> Result<bool, SuppressError> {
        let (me, address) = (self.clone(), address.to_owned());
        tokio::task::spawn_blocking(move || me.remove_blocking(&address))
            .await
            .map_err(|e| SuppressError::Task(e.to_string()))?
    }

    /// Closes the store; later writes fail with `Closed`, `is_suppressed` keeps answering
    /// from memory. Idempotent.
    pub fn close(&self) {
        self.inner.col.close();
    }
}

fn scan<'a>(db: Cf<'a>, prefix: &[u8]) -> impl Iterator<Item = Entry> + 'a {
    db.scan(prefix, prefix_end(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> SuppressionList {
        SuppressionList::open(dir, Clock::system()).expect("open")
    }

    #[test]
    fn entries_survive_a_reopen_and_are_case_insensitive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = open(dir.path());
        let (added, e) = list
            .add_blocking(
                "<Bob@Example.TEST>",
                "Invalid address",
                Source::Bounce,
                Some("550 5.1.1"),
            )
            .expect("add");
        assert_eq!(added, Added::New);
        assert_eq!(e.address, "bob@example.test");
        assert!(list.is_suppressed("bob@example.test"));
        assert!(list.is_suppressed("BOB@example.test"));
        assert!(!list.is_suppressed("alice@example.test"));
        list.close();
        let list = open(dir.path());
        assert!(list.is_suppressed("bob@example.test"));
        let got = list.get("bob@example.test").expect("get").expect("listed");
        assert_eq!(got.reason, "Invalid address");
        assert_eq!(got.source, Source::Bounce);
        assert_eq!(got.detail.as_deref(), Some("550 5.1.1"));
        assert!(list.remove_blocking("Bob@example.test").expect("remove"));
        assert!(!list.is_suppressed("bob@example.test"));
        assert!(
            !list
                .remove_blocking("bob@example.test")
                .expect("remove again")
        );
        list.close();
    }

    #[test]
    fn operator_entries_are_not_overwritten_by_automatic_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = open(dir.path());
        list.add_blocking("a@x.test", "asked to stop", Source::Manual, None)
            .expect("add");
        let (added, e) = list
            .add_blocking("a@x.test", "Invalid address", Source::Bounce, None)
            .expect("add");
        assert_eq!(added, Added::Kept);
        assert_eq!(e.reason, "asked to stop");
        let (added, _) = list
            .add_blocking("a@x.test", "re-added", Source::Manual, None)
            .expect("add");
        assert_eq!(added, Added::Replaced);
        list.close();
    }

    #[test]
    fn listing_pages_and_filters_by_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = open(dir.path());
        for (a, s) in [
            ("c@x.test", Source::Bounce),
            ("a@x.test", Source::Complaint),
            ("b@x.test", Source::Bounce),
        ] {
            list.add_blocking(a, "r", s, None).expect("add");
        }
        let all: Vec<String> = list
            .list(None, None, 10)
            .expect("list")
            .into_iter()
            .map(|s| s.address)
            .collect();
        assert_eq!(all, ["a@x.test", "b@x.test", "c@x.test"]);
        let page = list.list(None, Some("a@x.test"), 1).expect("list");
        assert_eq!(page[0].address, "b@x.test");
        let bounces = list.list(Some(Source::Bounce), None, 10).expect("list");
        assert_eq!(bounces.len(), 2);
        list.close();
    }

    #[test]
    fn garbage_is_refused_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = open(dir.path());
        for bad in ["", "no-at-sign", "@x.test", "a@", "a b@x.test"] {
            assert!(matches!(
                list.add_blocking(bad, "r", Source::Manual, None),
                Err(SuppressError::BadAddress(_))
            ));
        }
        assert!(list.is_empty());
        list.close();
    }
}
