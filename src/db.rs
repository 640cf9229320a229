//! The one RocksDB of the server (`<data_dir>/db`): every store is a column family of it,
//! so one WAL fsync can cover writes of several stores and memory is bounded in one place.
//!
//! | family         | owner                              | keys                          |
//! |----------------|------------------------------------|-------------------------------|
//! | `queue`        | [`crate::queue`] (store, indexes)  | `m/ b/ d/ s/ B/ r/ v/`, see `queue::keys` |
//! | `stats`        | [`crate::stats`] (+ events outbox, suspensions, MTA-STS policies, TLS-RPT counters) | `h/` (merge: i64 add) `o/ i/ m/ u/ w/ U/ S/ R/` `T/` (merge) |
//! | `suppressions` | [`crate::bounce::SuppressionList`] | `s/<address>`                 |
//! | `warming`      | [`crate::delivery::warming`]       | `f/ d/ h/ l/`                 |
//! | `default`      | this module                        | `migrated/<family>` markers   |
//!
//! Why these families and no more: a family is the unit of options (the stats merge
//! operator, memtable size) and of compaction (retention compacts the queue's), and each
//! one costs a memtable. The queue's indexes stay in the queue family under key prefixes:
//! they change in the same batches as the records they index, are read with bounded
//! iterators that never cross a prefix, and a family each would add four memtables for no
//! option they need differently.
//!
//! Memory: one LRU block cache of `[store] cache_bytes` shared by every family (index and
//! filter blocks included), and a write buffer manager that charges every memtable to that
//! cache and flushes once they pass three quarters of it. The queue's memtable may take half
//! (bodies are read back by delivery soon after they are written: from memory, not from an
//! SST). The WAL is kept to `cache_bytes` too, so a rarely written family cannot pin old WAL
//! files.
//!
//! Lifetime: [`Db`] is a cheap clone; stores hold a [`Column`] (their family, and whether
//! they are closed). [`Db::close`] is the one close path: it flushes every family and
//! releases the directory lock; the server calls it last at shutdown. An upgrade from the
//! four separate databases of earlier versions is done by [`migrate`] before the open.

mod cf;
mod migrate;

pub use cf::{Cf, Entry, Iter, Write, prefix_end};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, FlushOptions,
    MergeOperands, Options, WriteBufferManager,
};

use crate::config::StoreConfig;

/// The database's directory under `server.data_dir`.
pub const DIR: &str = "db";

/// A store's column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Queue,
    Stats,
    Suppressions,
    Warming,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Queue,
        Family::Stats,
        Family::Suppressions,
        Family::Warming,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Queue => "queue",
            Family::Stats => "stats",
            Family::Suppressions => "suppressions",
            Family::Warming => "warming",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("store is closed")]
    Closed,
    #[error("store migration: cannot {what} {path}: {source}")]
    Migrate {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{data_dir} holds the store {data_dir}/{DIR} and also store directories of an \
         earlier version that were never copied into it: {dirs}. Refusing to start, so that \
         mail queued in them is not left behind unseen. To migrate them, stop mxgate and move \
         {data_dir}/{DIR} out of the data directory: the next start copies {dirs} into a new \
         {data_dir}/{DIR}. To drop them instead, move them out of the data directory."
    )]
    Unmigrated { data_dir: String, dirs: String },
}

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` once closed: close takes the write lock, so it waits for readers in progress.
    db: RwLock<Option<DB>>,
    path: PathBuf,
}

impl Db {
    /// Opens `<data_dir>/db`, first migrating the separate stores of an earlier version.
    pub fn open_data_dir(data_dir: &Path, cfg: &StoreConfig) -> Result<Db, DbError> {
        migrate::prepare(data_dir, cfg)?;
        Db::open(&data_dir.join(DIR), cfg)
    }

    /// Opens (or creates) the database in `dir` with every family.
    pub fn open(dir: &Path, cfg: &StoreConfig) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let budget = usize::try_from(cfg.cache_bytes.0).unwrap_or(usize::MAX);
        let cache = Cache::new_lru_cache(budget);
        let memtables = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 4 * 3,
            false,
            cache.clone(),
        );
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Small machines: two background jobs are enough for a mail server's write rate.
        opts.set_max_background_jobs(2);
        opts.set_write_buffer_manager(&memtables);
        opts.set_max_total_wal_size(cfg.cache_bytes.0);
        opts.set_keep_log_file_num(10);
        // Reuse retired WAL files: each group commit's fdatasync then flushes only the data
        // (a recycled file keeps its size), instead of data plus a synchronous inode write
        // for the grown size (ext4: `ext4_write_inode` in every fsync; perf: fsync 12% ->
        // 9% of server samples, issue 13). Costs the disk of two retired WALs (each at most
        // what the memtables hold, so 2 x cache_bytes at worst). Needs the default
        // point-in-time WAL recovery, which tells a reused file's stale tail from new records.
        opts.set_recycle_log_file_num(2);
        let families = std::iter::once(ColumnFamilyDescriptor::new(
            rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
            family_options(None, &cache, budget),
        ))
        .chain(Family::ALL.into_iter().map(|f| {
            ColumnFamilyDescriptor::new(f.name(), family_options(Some(f), &cache, budget))
        }));
        let db = DB::open_cf_descriptors(&opts, dir, families)?;
        Ok(Db {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                path: dir.to_path_buf(),
            }),
        })
    }

    /// The database's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on `family` of the open database, or fails with [`DbError::Closed`].
    pub fn with<T, E: From<DbError>>(
        &self,
        family: Family,
        f: impl FnOnce(Cf<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let guard = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(DbError::Closed)?;
        f(Cf::new(db, family))
    }

    /// Flushes every family's memtables and closes the database; later calls fail with
    /// `Closed`. Not needed for durability (writes are in the WAL); it makes the next open
    /// replay nothing. Idempotent.
    pub fn close(&self) {
        let db = self
            .inner
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(db) = db else { return };
        let families: Vec<&ColumnFamily> = Family::ALL
            .iter()
            .filter_map(|f| db.cf_handle(f.name()))
            .collect();
        if let Err(e) = db.flush_cfs_opt(&families, &FlushOptions::default()) {
            tracing::warn!(error = %e, "store flush at close failed");
        }
    }
}

/// Options of one family (`None`: the default family, which holds only markers).
fn family_options(family: Option<Family>, cache: &Cache, budget: usize) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Index and filter blocks count against the cache too, or they would grow unbounded
    // with the data; L0's stay pinned, as they are read on every lookup.
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Point lookups of absent keys are common (`B/<id>` on every final transition).
    table.set_bloom_filter(10.0, false);
    if family == Some(Family::Queue) {
        // Bodies of a few KiB each: 4 KiB blocks made an index entry per body, and with the
        // memtables charged to a small cache those index blocks were evicted and read back
        // (LZ4-decompressed) on every schedule seek — 6% of the CPU at 32 MiB (issue 13).
        table.set_block_size(32 * 1024);
    }
    let mut o = Options::default();
    o.set_block_based_table_factory(&table);
    // The queue takes nearly every byte written (bodies); the others are small.
    let memtable = match family {
        Some(Family::Queue) => budget / 2,
        Some(_) => budget / 16,
        None => 1 << 20,
    };
    o.set_write_buffer_size(memtable.max(1 << 20));
    if family == Some(Family::Stats) {
        o.set_merge_operator_associative("mxgate_add_i64", add_i64);
    }
    o
}

/// Merge operator of the `stats` family: values are i64 LE counters, operands add.
fn add_i64(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut sum = existing.map_or(0, decode_i64);
    for op in operands {
        sum = sum.saturating_add(decode_i64(op));
    }
    Some(sum.to_le_bytes().to_vec())
}

/// A counter value of the `stats` family (0 when malformed).
pub fn decode_i64(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

/// A store's family of the shared [`Db`], and whether that store is closed; cheap to clone.
#[derive(Clone)]
pub struct Column {
    db: Db,
    family: Family,
    state: Arc<ColumnState>,
}

struct ColumnState {
    closed: AtomicBool,
    /// The store opened the database itself (tests, tools): closing the store closes it.
    owner: bool,
}

impl Column {
    /// `family` of the server's database; the server closes the database.
    pub fn new(db: &Db, family: Family) -> Column {
        Column::make(db.clone(), family, false)
    }

    /// A database of its own in `dir`, closed with the store (a store used alone).
    pub fn standalone(dir: &Path, family: Family) -> Result<Column, DbError> {
        let db = Db::open(dir, &StoreConfig::default())?;
        Ok(Column::make(db, family, true))
    }

    fn make(db: Db, family: Family, owner: bool) -> Column {
        Column {
            db,
            family,
            state: Arc::new(ColumnState {
                closed: AtomicBool::new(false),
                owner,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `f` on the family, or fails with [`DbError::Closed`] once the store is closed.
    pub fn with<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.is_closed() {
            return Err(DbError::Closed.into());
        }
        self.db.with(self.family, f)
    }

    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }

    /// Later calls fail with `Closed`; a standalone store also closes its database.
    pub fn close(&self) {
        self.state.closed.store(true, Ordering::Release);
        if self.state.owner {
            self.db.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use rocksdb::WriteBatch;

    use super::*;

    #[test]
    fn every_family_is_created_and_stats_counters_merge_across_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::open(dir.path(), &StoreConfig::default()).expect("open");
        db.with(Family::Stats, |cf| {
            cf.merge(b"h/x", 2i64.to_le_bytes())?;
            Ok::<_, DbError>(cf.merge(b"h/x", 3i64.to_le_bytes())?)
        })
        .expect("merge");
        db.with(Family::Queue, |cf| {
            Ok::<_, DbError>(cf.put_synced(b"m/1", b"q")?)
        })
        .expect("put");
        db.close();
        assert!(matches!(
            db.with(Family::Queue, |cf| cf.get(b"m/1").map_err(DbError::from)),
            Err(DbError::Closed)
        ));
        let mut names = DB::list_cf(&Options::default(), dir.path()).expect("list");
        names.sort();
        assert_eq!(
            names,
            ["default", "queue", "stats", "suppressions", "warming"]
        );
        let db = Db::open(dir.path(), &StoreConfig::default()).expect("reopen");
        let (sum, queued, elsewhere) = db
            .with(Family::Stats, |cf| {
                let sum = cf.get(b"h/x")?.map(|v| decode_i64(&v));
                let q = cf.family(Family::Queue).get(b"m/1")?;
                let w = cf.family(Family::Warming).get(b"m/1")?;
                Ok::<_, DbError>((sum, q, w))
            })
            .expect("read");
        assert_eq!(sum, Some(5));
        assert_eq!(queued.as_deref(), Some(&b"q"[..]));
        assert_eq!(elsewhere, None, "families are separate keyspaces");
        db.close();
    }

    #[test]
    fn a_batch_spans_families_atomically() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::open(dir.path(), &StoreConfig::default()).expect("open");
        db.with(Family::Queue, |q| {
            let mut batch = WriteBatch::default();
            q.put_in(&mut batch, b"m/1", b"meta");
            q.add(
                &mut batch,
                &Write::Merge(Family::Stats, b"h/1".to_vec(), 1i64.to_le_bytes().to_vec()),
            );
            Ok::<_, DbError>(q.write(batch, true)?)
        })
        .expect("write");
        let got = db
            .with(Family::Stats, |s| {
                Ok::<_, DbError>(s.get(b"h/1")?.map(|v| decode_i64(&v)))
            })
            .expect("read");
        assert_eq!(got, Some(1));
        db.close();
    }

    #[test]
    fn a_closed_column_refuses_while_the_shared_database_stays_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::open(dir.path(), &StoreConfig::default()).expect("open");
        let (a, b) = (
            Column::new(&db, Family::Queue),
            Column::new(&db, Family::Stats),
        );
        a.close();
        assert!(matches!(
            a.with(|cf| cf.get(b"k").map_err(DbError::from)),
            Err(DbError::Closed)
        ));
        b.with(|cf| cf.put(b"k", b"v").map_err(DbError::from))
            .expect("other store still open");
        db.close();
        assert!(matches!(
            b.with(|cf| cf.get(b"k").map_err(DbError::from)),
            Err(DbError::Closed)
        ));
    }
}
