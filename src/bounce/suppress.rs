//! The suppression list: addresses mxgate stops mailing (issue 6 §6). Hard bounces (Invalid
//! address, Mailbox), spam complaints (ARF / SES feedback) and unsubscribes add an address
//! with its reason, time and source; operators list, add and remove entries through
//! `/api/suppressions` and `mxgate suppress`. Submission asks [`SuppressionList::is_suppressed`]
//! at RCPT and answers `550 5.7.1 Recipient suppressed`.
//!
//! Storage: its own RocksDB (`<data_dir>/suppressions`), one key `s/<address>` per entry,
//! the value the JSON of [`Suppression`]; every write is synced before it returns. The set
//! of addresses is also held in memory (loaded at open), so the RCPT check is a hash lookup
//! that never blocks on disk.
//!
//! Addresses are compared lower-cased: RFC 5321 lets a local part be case sensitive, but no
//! mailbox provider in practice treats `Bob@` and `bob@` as two people, and a suppression
//! that misses on case would mail a dead or complaining address again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, WriteOptions};
use serde::{Deserialize, Serialize};

use super::Category;
use crate::clock::Clock;

/// Errors of the suppression store.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    #[error("cannot create suppression store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("suppression store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt suppression record for {address}: {source}")]
    Corrupt {
        address: String,
        source: serde_json::Error,
    },
    #[error("{0:?} is not an e-mail address")]
    BadAddress(String),
    #[error("suppression store is closed")]
    Closed,
    #[error("suppression store task failed: {0}")]
    Task(String),
}

/// Why an address is on the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A permanent bounce in a hard category (Invalid address, Mailbox).
    Bounce,
    /// A spam / abuse complaint (ARF feedback report, provider feedback loop).
    Complaint,
    /// The recipient unsubscribed (RFC 8058 one-click, unsubscribe alias).
    Unsubscribe,
    /// Added by an operator (API / CLI).
    Manual,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Bounce => "bounce",
            Source::Complaint => "complaint",
            Source::Unsubscribe => "unsubscribe",
            Source::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [
            Source::Bounce,
            Source::Complaint,
            Source::Unsubscribe,
            Source::Manual,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

/// One suppressed address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Lower-cased address.
    pub address: String,
    /// Short reason: the bounce category ("Invalid address"), the complaint's feedback type
    /// ("complaint: abuse"), "unsubscribe", or the operator's words.
    pub reason: String,
    pub source: Source,
    /// When the entry was made, milliseconds since the epoch.
    pub created_ms: u64,
    /// Supporting detail: the remote diagnostic, the queue id of the message, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Does a bounce of `category` say the address itself is dead, so mail to it must stop
/// (issue 6 §6)? Only permanent `Invalid address` and `Mailbox` failures: a full mailbox,
/// a block or a rate limit is about this message or this sender, not the address.
pub fn suppresses_category(category: Category, permanent: bool) -> bool {
    permanent && matches!(category, Category::InvalidAddress | Category::Mailbox)
}

/// What [`SuppressionList::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The address was not on the list.
    New,
    /// The address was listed; its entry now has the new reason and source.
    Replaced,
    /// The address was already listed by an operator; an automatic entry does not overwrite
    /// the operator's words.
    Kept,
}

/// Handle to the list; cheap to clone.
#[derive(Clone)]
pub struct SuppressionList {
    inner: Arc<Inner>,
}

struct Inner {
    db: RwLock<Option<DB>>,
    /// Every listed address (the RCPT fast path).
    addresses: RwLock<HashSet<String>>,
    /// Serialises add/remove so the store and the in-memory set never disagree.
    writes: Mutex<()>,
    clock: Clock,
}

const PREFIX: &[u8] = b"s/";
/// Longest address accepted (RFC 5321 §4.5.3.1.3 path limit).
const MAX_ADDRESS: usize = 256;
/// Longest reason / detail stored.
const MAX_TEXT: usize = 1000;

fn key(address: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(address.as_bytes());
    k
}

/// `<Bob@Example.COM>` → `bob@example.com`; `None` when it is no plausible address.
pub fn normalize_address(raw: &str) -> Option<String> {
    let a = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let (local, domain) = a.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && a.len() <= MAX_ADDRESS
        && !a.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| a.to_lowercase())
}

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl SuppressionList {
    /// Opens (or creates) the list in `dir` and loads its addresses into memory.
    pub fn open(dir: &Path, clock: Clock) -> Result<SuppressionList, SuppressError> {
        std::fs::create_dir_all(dir).map_err(|source| SuppressError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(1);
        let db = DB::open(&opts, dir)?;
        let mut addresses = HashSet::new();
        for entry in scan(&db, PREFIX) {
            let (k, _) = entry?;
            addresses.insert(String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned());
        }
        tracing::info!(entries = addresses.len(), "suppression list loaded");
        Ok(SuppressionList {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
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
        f: impl FnOnce(&DB) -> Result<T, SuppressError>,
    ) -> Result<T, SuppressError> {
        let guard = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(SuppressError::Closed)?;
        f(db)
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
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(prefix_end(PREFIX));
            let iter = db.iterator_opt(IteratorMode::From(&start, Direction::Forward), ro);
            for entry in iter {
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
        self.with_db(|db| Ok(db.put_opt(key(&a), value, &synced())?))?;
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
            self.with_db(|db| Ok(db.delete_opt(key(&a), &synced())?))?;
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

    /// Flushes and closes the store; later writes fail with `Closed`, `is_suppressed` keeps
    /// answering from memory. Idempotent.
    pub fn close(&self) {
        let db = self
            .inner
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = db
            && let Err(e) = db.flush()
        {
            tracing::warn!(error = %e, "suppression store flush failed at close");
        }
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

type Entry = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

fn scan<'a>(db: &'a DB, prefix: &[u8]) -> impl Iterator<Item = Entry> + 'a {
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(prefix_end(prefix));
    db.iterator_opt(IteratorMode::From(prefix, Direction::Forward), ro)
}

/// The first key after every key starting with `prefix` (prefix ends in `/`, so +1 works).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
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
