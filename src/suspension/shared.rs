//! Suspensions shared by a cluster's nodes (issue 18): a domain one node suspends is refused
//! at MAIL FROM on every node, and a lift on any node lifts it everywhere. Redis holds hash
//! `susp` (domain → [`Suspension`] JSON); each node keeps its own copy (the MAIL FROM fast
//! path, and what it works from while Redis is down). Bounce windows are shared too, see
//! [`super::shared_window`].
//!
//! A suspend or a lift made here is written with an outbox record (`U/<seq>` in the
//! statistics family, in the same synced batch as the `u/` record, the way the suppression
//! list's outbox works) and drained to Redis at once, or in order when Redis is back, even
//! after a restart in between. Once a second the node compares: a domain Redis has and the
//! node not was suspended elsewhere (adopted, without a second event); a domain the node
//! has and Redis not was lifted elsewhere if the node saw it in Redis before, else it is the
//! node's to publish (Redis came back empty).

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::shared_window::window_keys;
use super::{Suspension, Suspensions, key};
use crate::cluster::{Cluster, ClusterError};
use crate::db::Cf;
use crate::stats::store::{self, StatsError};

const EVERY: Duration = Duration::from_secs(1);
const OUTBOX: &[u8] = store::SUSPENSION_OUTBOX;
/// Outbox records per `MULTI`.
const BATCH: usize = 200;

/// The cluster side of [`Suspensions`].
#[derive(Default)]
pub(super) struct Shared {
    /// Sequence of the next outbox record (keys sort in the order changes were made).
    next_seq: AtomicU64,
    /// Rung when an outbox record is written: it goes to Redis now, not at the next tick.
    wake: Notify,
}

fn outbox_key(seq: u64) -> Vec<u8> {
    let mut k = OUTBOX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Suspensions {
    /// Shares suspensions through `cluster` from now on; changes left in the outbox by an
    /// earlier run go to Redis first.
    pub fn share(&self, cluster: &Cluster) -> Result<(), StatsError> {
        let last = self.inner.store.last_key(OUTBOX)?;
        let next = last
            .and_then(|k| <[u8; 8]>::try_from(&k[OUTBOX.len()..]).ok())
            .map_or(0, |b| u64::from_be_bytes(b) + 1);
        self.inner.shared.next_seq.store(next, Ordering::SeqCst);
        cluster
            .metrics()
            .cluster_pending("suspension", self.inner.store.count(OUTBOX)?);
        let _ = self.inner.cluster.set(cluster.clone());
        Ok(())
    }

    /// Adds the outbox record of this node's change of `domain` (`None` = lifted) to
    /// `batch`; false (nothing added) when suspensions are not shared.
    pub(super) fn outbox_put(
        &self,
        db: Cf<'_>,
        batch: &mut rocksdb::WriteBatch,
        domain: &str,
        json: Option<&[u8]>,
    ) -> bool {
        if self.inner.cluster.get().is_none() {
            return false;
        }
        let seq = self.inner.shared.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut v = domain.as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(json.unwrap_or_default());
        db.put_in(batch, outbox_key(seq), v);
        true
    }

    /// An outbox record was written.
    pub(super) fn published(&self) {
        self.inner.shared.wake.notify_one();
    }

    /// Keeps the node's copy and Redis in step until `shutdown`.
    pub async fn run_shared(self, shutdown: CancellationToken) {
        let Some(cluster) = self.inner.cluster.get().cloned() else {
            return;
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut epoch: Option<String> = None;
        // What the first sync after a time without Redis drains is a replay.
        let mut replay = true;
        loop {
            replay = if cluster.is_up() {
                match self.sync(&cluster, &mut seen, &mut epoch, replay).await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::debug!(error = %e, "suspension sync: Redis lost");
                        true
                    }
                }
            } else {
                true
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
                _ = self.inner.shared.wake.notified() => {}
            }
        }
    }

    async fn sync(
        &self,
        cluster: &Cluster,
        seen: &mut HashSet<String>,
        epoch: &mut Option<String>,
        replay: bool,
    ) -> Result<(), ClusterError> {
        self.drain(cluster, replay).await?;
        let hash = cluster.key("susp");
        let mut read = redis::pipe();
        read.get(cluster.key("epoch")).hgetall(&hash);
        let mut conn = cluster.connection();
        let (now_epoch, remote): (Option<String>, HashMap<String, String>) =
            cluster.guard(read.query_async(&mut conn)).await?;
        if !self.outbox_is_empty() {
            // A change made since the drain: compared after it is in Redis, next round.
            return Ok(());
        }
        if *epoch != now_epoch {
            seen.clear();
            *epoch = now_epoch;
        }
        for (domain, json) in &remote {
            if !self.is_suspended(domain)
                && let Ok(s) = serde_json::from_str::<Suspension>(json)
            {
                tracing::warn!(domain, reason = %s.reason, "sending domain suspended by another node");
                self.adopt(s);
            }
        }
        let mut republish = redis::pipe();
        for s in self.list() {
            if remote.contains_key(&s.domain) {
                continue;
            }
            if seen.contains(&s.domain) {
                tracing::info!(domain = %s.domain, "suspension lifted by another node");
                self.lift_local(&s.domain, false);
            } else if let Ok(json) = serde_json::to_string(&s) {
                republish.hset(&hash, &s.domain, json).ignore();
            }
        }
        *seen = remote.into_keys().collect();
        cluster.guard(republish.query_async::<()>(&mut conn)).await
    }

    fn outbox_is_empty(&self) -> bool {
        self.inner
            .store
            .first(OUTBOX, 1)
            .is_ok_and(|first| first.is_empty())
    }

    /// Pushes the outbox to Redis in order, [`BATCH`] records per `MULTI`; a lift also
    /// drops the domain's shared bounce window (it starts afresh, as the node's own does).
    async fn drain(&self, cluster: &Cluster, replay: bool) -> Result<(), ClusterError> {
        let hash = cluster.key("susp");
        loop {
            let batch = match self.inner.store.first(OUTBOX, BATCH) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the suspension outbox");
                    return Ok(());
                }
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (_, v) in &batch {
                let text = String::from_utf8_lossy(v);
                let (domain, json) = text.split_once('\n').unwrap_or((&text, ""));
                if json.is_empty() {
                    pipe.hdel(&hash, domain).ignore();
                    pipe.del(&window_keys(cluster, domain)).ignore();
                } else {
                    pipe.hset(&hash, domain, json).ignore();
                }
            }
            let mut conn = cluster.connection();
            cluster.guard(pipe.query_async::<()>(&mut conn)).await?;
            let n = batch.len() as u64;
            let cleared = self.inner.store.with(|db| {
                let mut done = rocksdb::WriteBatch::default();
                for (k, _) in &batch {
                    db.delete_in(&mut done, k);
                }
                // Not synced: a record replayed twice after a crash is the same write twice.
                Ok(db.write(done, false)?)
            });
            if let Err(e) = cleared {
                tracing::warn!(error = %e, "cannot clear published suspension records");
                return Ok(());
            }
            let m = cluster.metrics();
            m.cluster_pending("suspension", self.inner.store.count(OUTBOX).unwrap_or(0));
            if replay {
                m.cluster_replayed("suspension", n);
            }
        }
    }

    /// Another node's suspension, kept here (store, memory, metric).
    fn adopt(&self, s: Suspension) {
        if let Ok(json) = serde_json::to_vec(&s)
            && let Err(e) = self.inner.store.put(&key(&s.domain), &json)
        {
            tracing::warn!(domain = %s.domain, error = %e, "cannot persist a suspension");
        }
        self.inner.metrics.domain_suspended(&s.domain, true);
        self.inner
            .suspended
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(s.domain.clone(), s);
    }
}
