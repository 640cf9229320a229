//! Upgrade of a data directory from the four separate databases of earlier versions
//! (`<data_dir>/queue`, `stats`, `suppressions`, `warming`) to the one database in
//! `<data_dir>/db`, on the first start of this version. Chosen over refusing to start:
//! the copy is mechanical (the key layouts did not change, each old database becomes its
//! family) and an operator who upgrades must not have to run a tool to keep queued mail.
//!
//! Crash safety: everything is copied into `<data_dir>/db.migrating`, made durable, and
//! only then renamed to `db` (one atomic rename); a start interrupted before that finds no
//! `db`, throws the partial copy away and copies again from the old directories, which are
//! untouched until then. Each copied family leaves a `migrated/<family>` marker in the
//! default family. After the rename the old directories are moved (not deleted) to
//! `<data_dir>/pre-db-stores/`; a start interrupted before that move finds `db` with the
//! markers of every old directory still present and just finishes the move.
//!
//! An old directory next to a `db` that has no marker for it (an operator restored a
//! backup of an old version into an upgraded data directory) is refused with
//! [`DbError::Unmigrated`], which says what to do: merging it into a live queue could
//! deliver mail twice or mix two queues' indexes, and ignoring it would hide queued mail.

use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, Options, WriteBatch};

use super::{DIR, Db, DbError, Family, add_i64};
use crate::config::StoreConfig;

/// Where the copy is built before it becomes `db`.
const STAGING: &str = "db.migrating";
/// Where the old directories are moved once copied.
pub const ASIDE: &str = "pre-db-stores";
/// Entries per write batch while copying (bounded memory for big bodies: also by bytes).
const BATCH_ENTRIES: usize = 1000;
const BATCH_BYTES: usize = 16 << 20;

fn marker(family: Family) -> Vec<u8> {
    format!("migrated/{}", family.name()).into_bytes()
}

/// Old store directories present in `data_dir`: those holding a RocksDB (`CURRENT`).
fn legacy_dirs(data_dir: &Path) -> Vec<(Family, PathBuf)> {
    Family::ALL
        .into_iter()
        .map(|f| (f, data_dir.join(f.name())))
        .filter(|(_, p)| p.join("CURRENT").is_file())
        .collect()
}

/// Makes `data_dir` hold only the one database (copying old stores into it), or refuses.
pub fn prepare(data_dir: &Path, cfg: &StoreConfig) -> Result<(), DbError> {
    let legacy = legacy_dirs(data_dir);
    if legacy.is_empty() {
        return Ok(());
    }
    let target = data_dir.join(DIR);
    if target.join("CURRENT").is_file() {
        let unmarked = unmarked(&target, cfg, &legacy)?;
        if !unmarked.is_empty() {
            let dirs: Vec<String> = unmarked.iter().map(|p| p.display().to_string()).collect();
            return Err(DbError::Unmigrated {
                data_dir: data_dir.display().to_string(),
                dirs: dirs.join(", "),
            });
        }
        tracing::info!("finishing an interrupted store migration");
    } else {
        copy_all(data_dir, cfg, &legacy)?;
    }
    move_aside(data_dir, &legacy)
}

/// The old directories `target` holds no copy of.
fn unmarked(
    target: &Path,
    cfg: &StoreConfig,
    legacy: &[(Family, PathBuf)],
) -> Result<Vec<PathBuf>, DbError> {
    let db = Db::open(target, cfg)?;
    let mut out = Vec::new();
    for (family, path) in legacy {
        let copied = db.with(Family::Queue, |cf| {
            Ok::<_, DbError>(cf.default_family().get(marker(*family))?.is_some())
        })?;
        if !copied {
            out.push(path.clone());
        }
    }
    db.close();
    Ok(out)
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DbError + 'a {
    move |source| DbError::Migrate {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Copies every old store into a staging database, then renames it to `db`.
fn copy_all(
    data_dir: &Path,
    cfg: &StoreConfig,
    legacy: &[(Family, PathBuf)],
) -> Result<(), DbError> {
    let staging = data_dir.join(STAGING);
    if staging.exists() {
        // A copy interrupted earlier: the old directories are still the truth.
        std::fs::remove_dir_all(&staging).map_err(io("remove the partial copy", &staging))?;
    }
    let names: Vec<&str> = legacy.iter().map(|(f, _)| f.name()).collect();
    tracing::warn!(
        dirs = ?names,
        "store directories of an earlier version: copying them into {}",
        data_dir.join(DIR).display()
    );
    let db = Db::open(&staging, cfg)?;
    for (family, path) in legacy {
        let n = copy_one(&db, *family, path)?;
        tracing::info!(family = family.name(), records = n, from = %path.display(), "store copied");
    }
    db.with(Family::Queue, |cf| cf.sync_wal().map_err(DbError::from))?;
    db.close();
    let target = data_dir.join(DIR);
    std::fs::rename(&staging, &target).map_err(io("rename the copy to", &target))?;
    sync_dir(data_dir)
}

/// Copies one old database into `family` (values as read: stats counters merged), and
/// records that it did in the same last batch.
fn copy_one(db: &Db, family: Family, path: &Path) -> Result<u64, DbError> {
    let mut opts = Options::default();
    if family == Family::Stats {
        // Pending merge operands of the old counters are folded by the same operator.
        opts.set_merge_operator_associative("mxgate_add_i64", add_i64);
    }
    let old = DB::open(&opts, path)?;
    let copied = db.with(family, |cf| {
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        for item in old.iterator(IteratorMode::Start) {
            let (k, v) = item?;
            cf.put_in(&mut batch, &k, &v);
            n += 1;
            if batch.len() >= BATCH_ENTRIES || batch.size_in_bytes() >= BATCH_BYTES {
                cf.write(std::mem::take(&mut batch), false)?;
            }
        }
        cf.default_family()
            .put_in(&mut batch, marker(family), n.to_be_bytes());
        cf.write(batch, true)?;
        Ok::<_, DbError>(n)
    })?;
    drop(old);
    Ok(copied)
}

/// Moves the copied old directories to `<data_dir>/pre-db-stores/`.
fn move_aside(data_dir: &Path, legacy: &[(Family, PathBuf)]) -> Result<(), DbError> {
    let aside = data_dir.join(ASIDE);
    std::fs::create_dir_all(&aside).map_err(io("create", &aside))?;
    for (family, path) in legacy {
        let mut to = aside.join(family.name());
        let mut n = 1;
        while to.exists() {
            n += 1;
            to = aside.join(format!("{}.{n}", family.name()));
        }
        std::fs::rename(path, &to).map_err(io("move aside", path))?;
    }
    sync_dir(data_dir)?;
    tracing::warn!(
        kept = %aside.display(),
        "store migration done; the old directories are kept there: remove them once this version runs well"
    );
    Ok(())
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), DbError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}
