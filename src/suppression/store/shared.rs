//! The list shared by a cluster's nodes (issue 18). Redis holds the cluster's list (hash
//! `supp`: address → entry JSON) and a change log (stream `supp:log`); each node keeps its
//! RocksDB list as the local copy the RCPT check reads, so a check never waits on Redis and
//! goes on while Redis is down.
//!
//! Writes: every local add/remove also puts an outbox record (`o/<seq>`) in the same synced
//! batch; the publisher drains the outbox to Redis (hash + log, one `MULTI` per batch of
//! records) as soon as it is written, or when Redis comes back: nothing made while Redis
//! was down is lost, and records replay in the order they were made.
//!
//! Reads: the follower reads the log from where it left off and applies other nodes'
//! changes. When it has no position in the current log (first connection, or Redis came
//! back empty: the `epoch` key is new), it merges the whole hash into the local copy; a node
//! that finds Redis empty seeds it with its local list first. A merge only adds: a removal
//! travels through the log, and a node that missed one keeps suppressing the address, the
//! safe side of the error.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SuppressionList;
use crate::cluster::{Cluster, ClusterError};
use crate::db::{Cf, prefix_end};
use crate::suppression::SuppressError;

const OUTBOX: &[u8] = b"o/";
/// Records per `MULTI` when draining the outbox or seeding.
const BATCH: usize = 200;
/// The change log keeps about this many records; a node away longer merges the hash.
const LOG_LEN: usize = 100_000;

/// The cluster side of a [`SuppressionList`].
pub(super) struct Shared {
    cluster: Cluster,
    next_seq: AtomicU64,
    pending: AtomicU64,
    wake: Notify,
}

fn outbox_key(seq: u64) -> Vec<u8> {
    let mut k = OUTBOX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Shared {
    /// Adds the outbox record of a change of `address` (`None` = removed) to `batch`.
    pub(super) fn enqueue(
        &self,
        db: Cf<'_>,
        batch: &mut rocksdb::WriteBatch,
        address: &str,
        entry: Option<&[u8]>,
    ) {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut v = address.as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(entry.unwrap_or_default());
        db.put_in(batch, outbox_key(seq), v);
    }

    pub(super) fn written(&self) {
        let n = self.pending.fetch_add(1, Ordering::SeqCst) + 1;
        self.cluster.metrics().cluster_pending("suppression", n);
        self.wake.notify_one();
    }
}

impl SuppressionList {
    /// Shares this list through `cluster` from now on: changes go to the outbox, and
    /// [`run_shared`](Self::run_shared) keeps Redis and the local copy in step.
    pub fn share(&self, cluster: &Cluster) -> Result<(), SuppressError> {
        let (next, pending) = self.with_db(|db| {
            let mut n = 0u64;
            let mut last = None;
            for entry in db.scan(OUTBOX, prefix_end(OUTBOX)) {
                let (k, _) = entry?;
                n += 1;
                last = k[OUTBOX.len()..].try_into().ok().map(u64::from_be_bytes);
            }
            Ok((last.map_or(0, |l| l + 1), n))
        })?;
        cluster.metrics().cluster_pending("suppression", pending);
        let shared = Shared {
            cluster: cluster.clone(),
            next_seq: AtomicU64::new(next),
            pending: AtomicU64::new(pending),
            wake: Notify::new(),
        };
        // A second call keeps the first handle: one outbox sequence per list.
        let _ = self.inner.shared.set(shared);
        Ok(())
    }

    /// The publisher and the follower, until `shutdown`.
    pub async fn run_shared(self, shutdown: CancellationToken) {
        let Some(shared) = self.inner.shared.get() else {
            return;
        };
        let cluster = shared.cluster.clone();
        tokio::join!(
            self.publish(&cluster, &shutdown),
            self.follow(&cluster, &shutdown)
        );
    }

    /// Drains the outbox whenever a change is written or Redis comes back.
    async fn publish(&self, cluster: &Cluster, shutdown: &CancellationToken) {
        let Some(shared) = self.inner.shared.get() else {
            return;
        };
        let mut up = cluster.subscribe();
        // Records drained right after Redis came back are the replay of its absence.
        let mut replay = true;
        loop {
            if *up.borrow_and_update() {
                match self.drain(cluster, replay).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(records = n, "suppressions published"),
                    Err(e) => tracing::debug!(error = %e, "suppression outbox kept for replay"),
                }
            }
            replay = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = shared.wake.notified() => false,
                r = up.changed() => if r.is_err() { return } else { true },
            };
        }
    }

    /// Pushes outbox records to Redis in order; returns how many.
    async fn drain(&self, cluster: &Cluster, replay: bool) -> Result<u64, ClusterError> {
        let mut total = 0;
        loop {
            let batch = self.outbox_batch().unwrap_or_default();
            if batch.is_empty() {
                return Ok(total);
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            let (hash, log) = (cluster.key("supp"), cluster.key("supp:log"));
            for (_, address, entry) in &batch {
                match entry {
                    Some(e) => pipe.hset(&hash, address, e).ignore(),
                    None => pipe.hdel(&hash, address).ignore(),
                };
                pipe.cmd("XADD")
                    .arg(&log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(LOG_LEN)
                    .arg("*")
                    .arg("node")
                    .arg(cluster.node())
                    .arg("addr")
                    .arg(address)
                    .arg("entry")
                    .arg(entry.as_deref().unwrap_or_default())
                    .ignore();
            }
            let mut conn = cluster.connection();
            cluster.guard(pipe.query_async::<()>(&mut conn)).await?;
            let done: Vec<Vec<u8>> = batch.into_iter().map(|(k, _, _)| k).collect();
            let n = done.len() as u64;
            self.outbox_done(done);
            if let Some(s) = self.inner.shared.get() {
                let left = s.pending.fetch_sub(n, Ordering::SeqCst).saturating_sub(n);
                cluster.metrics().cluster_pending("suppression", left);
                if replay {
                    cluster.metrics().cluster_replayed("suppression", n);
                }
            }
            total += n;
        }
    }

    /// Up to [`BATCH`] outbox records: (key, address, entry JSON or `None` = removed).
    #[allow(clippy::type_complexity)]
    fn outbox_batch(&self) -> Result<Vec<(Vec<u8>, String, Option<String>)>, SuppressError> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.scan(OUTBOX, prefix_end(OUTBOX)).take(BATCH) {
                let (k, v) = item?;
                let text = String::from_utf8_lossy(&v);
                let (address, entry) = text.split_once('\n').unwrap_or((&text, ""));
                let entry = (!entry.is_empty()).then(|| entry.to_string());
                out.push((k.to_vec(), address.to_string(), entry));
            }
            Ok(out)
        })
    }

    fn outbox_done(&self, keys: Vec<Vec<u8>>) {
        let r = self.with_db(|db| {
            let mut batch = rocksdb::WriteBatch::default();
            for k in &keys {
                db.delete_in(&mut batch, k);
            }
            // Not synced: a record replayed twice after a crash is the same write twice.
            Ok(db.write(batch, false)?)
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot clear published suppression records");
        }
    }
}
