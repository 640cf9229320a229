//! [`Cf`]: one family of the open database, as the stores read and write it, for the
//! duration of a [`Db::with`](super::Db::with) call; and [`Write`], a write to some family
//! built without the database at hand.

use rocksdb::{
    ColumnFamily, CompactOptions, DB, DBIteratorWithThreadMode, DBPinnableSlice, Direction,
    IteratorMode, ReadOptions, WriteBatch, WriteOptions,
};

use super::Family;

/// One raw entry as iterators yield it.
pub type Entry = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// An iterator over a family.
pub type Iter<'a> = DBIteratorWithThreadMode<'a, DB>;

/// One family of the open database, for the duration of a [`Db::with`] call.
#[derive(Clone, Copy)]
pub struct Cf<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
}

impl<'a> Cf<'a> {
    pub(super) fn new(db: &'a DB, family: Family) -> Cf<'a> {
        let cf = db
            .cf_handle(family.name())
            .expect("every family is created when the database opens");
        Cf { db, cf }
    }

    /// Another family of the same database (writes to several families in one batch).
    pub fn family(&self, family: Family) -> Cf<'a> {
        Cf::new(self.db, family)
    }

    /// The default family (format markers).
    pub(super) fn default_family(&self) -> Cf<'a> {
        let cf = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .expect("the default family always exists");
        Cf { db: self.db, cf }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db.get_cf(self.cf, key)
    }

    pub fn get_pinned(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<DBPinnableSlice<'a>>, rocksdb::Error> {
        self.db.get_pinned_cf(self.cf, key)
    }

    /// Written to the WAL without fsync (a later synced write or [`Cf::sync_wal`] makes it
    /// durable).
    pub fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), rocksdb::Error> {
        self.db.put_cf(self.cf, key, value)
    }

    /// Durable when it returns (WAL fsync'd).
    pub fn put_synced(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), rocksdb::Error> {
        self.db.put_cf_opt(self.cf, key, value, &synced(true))
    }

    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<(), rocksdb::Error> {
        self.db.delete_cf(self.cf, key)
    }

    pub fn delete_synced(&self, key: impl AsRef<[u8]>) -> Result<(), rocksdb::Error> {
        self.db.delete_cf_opt(self.cf, key, &synced(true))
    }

    pub fn merge(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), rocksdb::Error> {
        self.db.merge_cf(self.cf, key, value)
    }

    /// Keys in `[start, end)` in order.
    pub fn scan(&self, start: &[u8], end: Vec<u8>) -> Iter<'a> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end);
        self.db
            .iterator_cf_opt(self.cf, ro, IteratorMode::From(start, Direction::Forward))
    }

    /// Keys at or before `key`, last first.
    pub fn scan_back(&self, key: &[u8]) -> Iter<'a> {
        self.db.iterator_cf_opt(
            self.cf,
            ReadOptions::default(),
            IteratorMode::From(key, Direction::Reverse),
        )
    }

    pub fn put_in(&self, batch: &mut WriteBatch, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        batch.put_cf(self.cf, key, value);
    }

    pub fn delete_in(&self, batch: &mut WriteBatch, key: impl AsRef<[u8]>) {
        batch.delete_cf(self.cf, key);
    }

    pub fn merge_in(&self, batch: &mut WriteBatch, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        batch.merge_cf(self.cf, key, value);
    }

    /// Writes `batch` (it may hold writes to any family) atomically; `sync`: fsync the WAL.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), rocksdb::Error> {
        self.db.write_opt(batch, &synced(sync))
    }

    /// Fsyncs the WAL: every write made so far, to any family, is durable.
    pub fn sync_wal(&self) -> Result<(), rocksdb::Error> {
        self.db.flush_wal(true)
    }

    /// Compacts this family's keys in `[start, end)`.
    pub fn compact_range(&self, start: &[u8], end: &[u8], opts: &CompactOptions) {
        self.db
            .compact_range_cf_opt(self.cf, Some(start), Some(end), opts);
    }
}

fn synced(sync: bool) -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(sync);
    w
}

/// The smallest key greater than every key starting with `prefix` (empty: no bound).
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

/// A write to some family, built without the database at hand and added to a batch later
/// (a statistics counter committed in the queue's batch, see `Queue::record_then_writing`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put(Family, Vec<u8>, Vec<u8>),
    Delete(Family, Vec<u8>),
    Merge(Family, Vec<u8>, Vec<u8>),
}

impl Cf<'_> {
    /// Adds `w` to `batch`, in `w`'s family.
    pub fn add(&self, batch: &mut WriteBatch, w: &Write) {
        match w {
            Write::Put(f, k, v) => self.family(*f).put_in(batch, k, v),
            Write::Delete(f, k) => self.family(*f).delete_in(batch, k),
            Write::Merge(f, k, v) => self.family(*f).merge_in(batch, k, v),
        }
    }
}
