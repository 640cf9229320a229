//! The background purge ([`Queue::run_retention`]): deletes finished messages
//! `queue.retention` after their last transition, then has RocksDB reclaim the space.
//!
//! Intake is never blocked by it: each step is one look at the retention index (a short
//! read off the committer) and one batch of at most [`PURGE_BATCH`] messages submitted to
//! the committer like any other write, so an enqueue waits at most for one such batch — no
//! lock is held across steps and no batch grows with the backlog. Deleted keys leave
//! tombstones; once the purge has caught up after [`COMPACT_AFTER`] deletions (or
//! [`COMPACT_EVERY`] after the first), the key ranges it deleted from are compacted, in
//! slices and without blocking RocksDB's own compactions, so the files really shrink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{BottommostLevelCompaction, CompactOptions};
use tokio_util::sync::CancellationToken;

use super::retention::{self, Entry};
use super::{Queue, RcptState, StoreError, keys};
use crate::db::Cf;
use crate::envelope::QueueId;

/// Messages deleted per batch: a few hundred point deletes, well under a millisecond of
/// committer time, so an enqueue queued behind it barely notices.
pub const PURGE_BATCH: usize = 256;
/// Longest the purge sleeps between looks at the index (the clock may be stepped, and with
/// a retention of hours this is still one seek per second).
pub const PURGE_POLL: Duration = Duration::from_secs(1);
/// Deletions after which the purged ranges are compacted as soon as the purge catches up.
pub const COMPACT_AFTER: u64 = 10_000;
/// A smaller number of deletions is compacted this long after the first of them.
pub const COMPACT_EVERY: Duration = Duration::from_secs(3600);
/// Pieces the purged id range is compacted in; shutdown is honoured between pieces.
const COMPACT_SLICES: u64 = 8;

/// What the purge has done since the queue was opened.
#[derive(Debug, Default)]
pub struct Progress {
    purged: AtomicU64,
    compactions: AtomicU64,
    passes: AtomicU64,
}

/// A reading of [`Progress`] ([`Queue::retention_progress`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionProgress {
    /// Messages deleted.
    pub purged: u64,
    /// Compactions of purged ranges finished.
    pub compactions: u64,
    /// Times the purge caught up (found nothing more due); a pass that starts after a
    /// change has seen it.
    pub passes: u64,
}

/// Deletions not yet compacted: how many, and the key ranges they touched.
#[derive(Debug)]
struct Purged {
    count: u64,
    min_id: u64,
    max_id: u64,
    max_final_ms: u64,
    since: Instant,
}

impl Purged {
    fn new() -> Purged {
        Purged {
            count: 0,
            min_id: u64::MAX,
            max_id: 0,
            max_final_ms: 0,
            since: Instant::now(),
        }
    }

    fn add(&mut self, entries: &[Entry], n: usize) {
        if self.count == 0 {
            self.since = Instant::now();
        }
        self.count += n as u64;
        for e in entries {
            self.min_id = self.min_id.min(e.id.0);
            self.max_id = self.max_id.max(e.id.0);
            self.max_final_ms = self.max_final_ms.max(e.final_ms);
        }
    }

    fn worth_compacting(&self) -> bool {
        self.count >= COMPACT_AFTER || (self.count > 0 && self.since.elapsed() >= COMPACT_EVERY)
    }

    /// Key ranges `[start, end)` to compact: meta and body in id slices, then the `s/` and
    /// `r/` indexes over the same span.
    fn ranges(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (lo, hi) = (self.min_id, self.max_id.saturating_add(1));
        let step = ((hi - lo) / COMPACT_SLICES).max(1);
        let mut out = Vec::new();
        let mut a = lo;
        while a < hi {
            let b = a.saturating_add(step).min(hi);
            for k in [keys::meta as fn(QueueId) -> [u8; 10], keys::body] {
                out.push((k(QueueId(a)).to_vec(), k(QueueId(b)).to_vec()));
            }
            a = b;
        }
        for st in RcptState::ALL.into_iter().filter(|s| s.is_final()) {
            let range = |id| keys::state(st, QueueId(id), 0).to_vec();
            out.push((range(lo), range(hi)));
        }
        let r_end = keys::retain_from(self.max_final_ms.saturating_add(1)).to_vec();
        out.push((keys::RETAIN.to_vec(), r_end));
        out
    }
}

impl Queue {
    /// Purges finished messages until `shutdown` (after indexing an older store once).
    pub async fn run_retention(self, shutdown: CancellationToken) {
        if let Err(e) = self.backfill_retention(&shutdown).await {
            tracing::warn!(error = %e, "cannot index finished messages for retention; will retry at restart");
        }
        let mut from_ms = 0;
        let mut purged = Purged::new();
        while !shutdown.is_cancelled() {
            let retention_ms = millis(self.inner.cfg.retention.get());
            let cutoff = self.inner.clock.now_ms().saturating_sub(retention_ms);
            let scan = self
                .on_db(move |db| retention::due(db, from_ms, cutoff, PURGE_BATCH))
                .await;
            let next_ms = match scan {
                Ok(scan) if !scan.due.is_empty() => {
                    from_ms = scan.due.last().map_or(0, |e| e.final_ms);
                    match self.purge(scan.due, &mut purged).await {
                        Ok(()) => continue,
                        Err(StoreError::Closed) => return,
                        Err(e) => tracing::warn!(error = %e, "retention purge failed"),
                    }
                    None
                }
                Ok(scan) => {
                    self.inner.progress.passes.fetch_add(1, Ordering::Relaxed);
                    // Caught up: the next pass looks from the start again, for entries
                    // written behind the floor meanwhile (a DSN read, an old store indexed).
                    from_ms = 0;
                    if purged.worth_compacting() {
                        self.compact(&purged, &shutdown).await;
                        purged = Purged::new();
                    }
                    scan.next_ms
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the retention index");
                    None
                }
            };
            self.purge_wait(next_ms, retention_ms, &shutdown).await;
        }
    }

    /// Sleeps until the next entry is due (at most [`PURGE_POLL`]); with a retention of 0,
    /// also wakes when a message finishes.
    async fn purge_wait(&self, next_ms: Option<u64>, retention_ms: u64, stop: &CancellationToken) {
        let now = self.inner.clock.now_ms();
        let wait = next_ms.map_or(PURGE_POLL, |ms| {
            Duration::from_millis(ms.saturating_add(retention_ms).saturating_sub(now))
        });
        let finished = async {
            if retention_ms == 0 {
                self.inner.shared.finalized.notified().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(wait.min(PURGE_POLL)) => {}
            _ = finished => {}
        }
    }

    async fn purge(&self, due: Vec<Entry>, purged: &mut Purged) -> Result<(), StoreError> {
        let (n, due) = self
            .commit(move |db| {
                let (change, n) = retention::purge(db, &due)?;
                Ok((change, (n, due)))
            })
            .await?;
        purged.add(&due, n);
        self.inner
            .progress
            .purged
            .fetch_add(n as u64, Ordering::Relaxed);
        self.inner.metrics.queue_purged(n as u64);
        tracing::debug!(purged = n, "retention purge");
        Ok(())
    }

    /// Compacts what `purged` deleted from, so the space goes back to the filesystem.
    async fn compact(&self, purged: &Purged, shutdown: &CancellationToken) {
        let started = Instant::now();
        let ranges = purged.ranges();
        let stop = shutdown.clone();
        let done = self
            .on_db(move |db| {
                compact_ranges(db, &ranges, &stop);
                Ok(())
            })
            .await;
        if done.is_ok() {
            self.inner
                .progress
                .compactions
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(purged = purged.count, took = ?started.elapsed(), "retention: compacted purged messages");
        }
    }

    /// Gives the finished messages of a store written before retention existed their
    /// `r/` entries, [`retention::BACKFILL_BATCH`] metas per commit. Once per store.
    async fn backfill_retention(&self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        if self.on_db(retention::indexed).await? {
            return Ok(());
        }
        tracing::info!("indexing finished messages for retention (store from an earlier version)");
        let mut from = QueueId(0);
        while !shutdown.is_cancelled() {
            let next = self
                .commit(move |db| retention::backfill(db, from, retention::BACKFILL_BATCH))
                .await?;
            match next {
                Some(id) => from = id,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// What the purge did since open (tests and benches wait on it).
    pub fn retention_progress(&self) -> RetentionProgress {
        let p = &self.inner.progress;
        RetentionProgress {
            purged: p.purged.load(Ordering::Relaxed),
            compactions: p.compactions.load(Ordering::Relaxed),
            passes: p.passes.load(Ordering::Relaxed),
        }
    }

    /// Runs a blocking store read off the runtime.
    async fn on_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.inner.shared.with_db(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// Compacts the ranges in the queue's family only (the other stores' files are not
/// touched). Non-exclusive, so RocksDB's own compactions (and with them intake) carry on
/// meanwhile; the bottommost level is rewritten too, or the deleted bodies there would
/// stay on disk.
fn compact_ranges(q: Cf<'_>, ranges: &[(Vec<u8>, Vec<u8>)], stop: &CancellationToken) {
    let mut opts = CompactOptions::default();
    opts.set_exclusive_manual_compaction(false);
    opts.set_bottommost_level_compaction(BottommostLevelCompaction::ForceOptimized);
    for (a, b) in ranges {
        if stop.is_cancelled() {
            return;
        }
        q.compact_range(a, b, &opts);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
