//! The follower of [`shared`](super::shared): applies other nodes' changes from the log to
//! the local copy, after a merge of the whole hash when it has no position in the log.

use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadReply};
use tokio_util::sync::CancellationToken;

use std::sync::PoisonError;

use super::{SuppressionList, key};
use crate::cluster::{Cluster, ClusterError};
use crate::suppression::{Source, SuppressError, Suppression, normalize_address};

/// Longest the stream read blocks before the follower looks at shutdown again.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries per HSCAN / HSETNX round trip in a merge or a seed.
const CHUNK: usize = 500;

/// Where the follower is: the Redis data set (its `epoch`) and the last log id applied.
#[derive(Default)]
struct Cursor {
    epoch: Option<String>,
    last_id: String,
}

impl SuppressionList {
    /// Follows the log while Redis is up; waits for it otherwise.
    pub(super) async fn follow(&self, cluster: &Cluster, shutdown: &CancellationToken) {
        let mut up = cluster.subscribe();
        let mut cursor = Cursor::default();
        loop {
            if *up.borrow_and_update()
                && let Err(e) = self.follow_while_up(cluster, &mut cursor, shutdown).await
            {
                tracing::debug!(error = %e, "suppression follower: Redis lost");
            }
            if shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = up.changed() => if r.is_err() { return },
            }
        }
    }

    async fn follow_while_up(
        &self,
        cluster: &Cluster,
        cursor: &mut Cursor,
        shutdown: &CancellationToken,
    ) -> Result<(), ClusterError> {
        let epoch = self.epoch(cluster).await?;
        if cursor.epoch.as_ref() != Some(&epoch) {
            cursor.last_id = self.merge(cluster).await?;
            cursor.epoch = Some(epoch);
        }
        let mut conn = cluster.dedicated(BLOCK).await?;
        let log = cluster.key("supp:log");
        while !shutdown.is_cancelled() {
            let mut read = redis::cmd("XREAD");
            read.arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64);
            read.arg("STREAMS").arg(&log).arg(&cursor.last_id);
            let reply: Option<StreamReadReply> = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = read.query_async(&mut conn) => r?,
            };
            for id in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                cursor.last_id = id.id.clone();
                let node: Option<String> = id.get("node");
                if node.as_deref() == Some(cluster.node()) {
                    continue;
                }
                let (Some(addr), entry) = (id.get::<String>("addr"), id.get::<String>("entry"))
                else {
                    continue;
                };
                let entry = entry.filter(|e| !e.is_empty());
                self.apply_remote_async(addr, entry).await;
            }
        }
        Ok(())
    }

    /// The data set's epoch; a Redis without one (new, or restarted empty) gets one now,
    /// seeded with this node's list.
    async fn epoch(&self, cluster: &Cluster) -> Result<String, ClusterError> {
        let key = cluster.key("epoch");
        let fresh = format!("{}-{:016x}", cluster.node(), rand::random::<u64>());
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&key).arg(&fresh).arg("NX").get(&key);
        let mut conn = cluster.connection();
        let (created, epoch): (Option<String>, String) =
            cluster.guard(pipe.query_async(&mut conn)).await?;
        if created.is_some() {
            let n = self.seed(cluster).await?;
            tracing::info!(
                entries = n,
                "cluster: Redis had no suppression list; seeded it from this node"
            );
        }
        Ok(epoch)
    }

    /// `HSETNX` of every local entry (an entry another node wrote first wins).
    async fn seed(&self, cluster: &Cluster) -> Result<usize, ClusterError> {
        let hash = cluster.key("supp");
        let mut after: Option<String> = None;
        let mut total = 0;
        loop {
            let page = match self.list(None, after.as_deref(), CHUNK) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the suppression list to seed Redis");
                    return Ok(total);
                }
            };
            let Some(last) = page.last() else {
                return Ok(total);
            };
            after = Some(last.address.clone());
            let mut pipe = redis::pipe();
            for s in &page {
                let json = serde_json::to_string(s).unwrap_or_default();
                pipe.hset_nx(&hash, &s.address, json).ignore();
            }
            let mut conn = cluster.connection();
            cluster.guard(pipe.query_async::<()>(&mut conn)).await?;
            total += page.len();
        }
    }

    /// Adds every entry of the cluster's hash missing here; returns the log id to follow
    /// from (taken first, so no change made during the merge is skipped).
    async fn merge(&self, cluster: &Cluster) -> Result<String, ClusterError> {
        let mut conn = cluster.connection();
        let mut last = redis::cmd("XREVRANGE");
        last.arg(cluster.key("supp:log"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let last: StreamRangeReply = cluster.guard(last.query_async(&mut conn)).await?;
        let last_id = last
            .ids
            .first()
            .map_or_else(|| "0".to_string(), |i| i.id.clone());
        let (hash, mut at, mut added) = (cluster.key("supp"), 0u64, 0usize);
        loop {
            let mut scan = redis::cmd("HSCAN");
            scan.arg(&hash).arg(at).arg("COUNT").arg(CHUNK);
            let (next, pairs): (u64, Vec<(String, String)>) =
                cluster.guard(scan.query_async(&mut conn)).await?;
            for (address, entry) in pairs {
                if !self.is_suppressed(&address)
                    && self.apply_remote_async(address, Some(entry)).await
                {
                    added += 1;
                }
            }
            if next == 0 {
                break;
            }
            at = next;
        }
        tracing::info!(added, "cluster: suppression list merged from Redis");
        Ok(last_id)
    }

    /// [`apply_remote`](Self::apply_remote) off the async runtime's threads (a synced
    /// RocksDB write).
    async fn apply_remote_async(&self, address: String, entry: Option<String>) -> bool {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.apply_remote(&address, entry.as_deref()))
            .await
            .unwrap_or(false)
    }

    /// Applies one change from another node to the local copy (not to the outbox).
    /// `entry`: the entry JSON, `None` = removed. True when it changed something.
    fn apply_remote(&self, address: &str, entry: Option<&str>) -> bool {
        let Some(a) = normalize_address(address) else {
            return false;
        };
        let parsed = match entry.map(serde_json::from_str::<Suppression>) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                tracing::warn!(rcpt = %a, error = %e, "corrupt suppression entry in Redis skipped");
                return false;
            }
            None => None,
        };
        match self.write_local(&a, parsed.as_ref()) {
            Ok(changed) => changed,
            Err(e) => {
                let e: SuppressError = e;
                tracing::warn!(rcpt = %a, error = %e, "cannot apply a cluster suppression change");
                false
            }
        }
    }

    /// Another node's change to the local copy (no outbox record); true when it changed
    /// the list. An operator's entry here is not overwritten by an automatic one.
    pub(super) fn write_local(
        &self,
        a: &str,
        entry: Option<&Suppression>,
    ) -> Result<bool, SuppressError> {
        let _serial = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let existing = self.get(a)?;
        let set = || {
            self.inner
                .addresses
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        match entry {
            Some(e) if existing.as_ref() == Some(e) => Ok(false),
            Some(e) => {
                if existing
                    .as_ref()
                    .is_some_and(|old| old.source == Source::Manual && e.source != Source::Manual)
                {
                    return Ok(false);
                }
                let value = serde_json::to_vec(e).map_err(|source| SuppressError::Corrupt {
                    address: a.to_string(),
                    source,
                })?;
                self.with_db(|db| Ok(db.put_synced(key(a), value)?))?;
                set().insert(a.to_string());
                Ok(true)
            }
            None if existing.is_none() => Ok(false),
            None => {
                self.with_db(|db| Ok(db.delete_synced(key(a))?))?;
                set().remove(a);
                Ok(true)
            }
        }
    }
}
