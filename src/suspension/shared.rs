//! Suspensions shared by a cluster's nodes (issue 18): a domain one node suspends is refused
//! at MAIL FROM on every node, and a lift on any node lifts it everywhere. Redis holds hash
//! `susp` (domain → [`Suspension`] JSON); each node keeps its own copy (the MAIL FROM fast
//! path, and what it works from while Redis is down).
//!
//! A suspend or a lift goes to Redis at once; made while Redis is down, it waits in memory
//! and is replayed when Redis is back. Once a second the node compares: a domain Redis has
//! and the node not was suspended elsewhere (adopted, without a second event); a domain the
//! node has and Redis not was lifted elsewhere if the node saw it in Redis before, else it
//! is the node's to publish (Redis came back empty). Bounce windows are shared too, see
//! [`super::shared_window`].

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Suspension, Suspensions, key};
use crate::cluster::{Cluster, ClusterError};

const EVERY: Duration = Duration::from_secs(1);

/// The cluster side of [`Suspensions`].
#[derive(Default)]
pub(super) struct Shared {
    /// Changes not in Redis yet: (domain, the suspension or `None` = lifted), in order.
    pending: Mutex<Vec<(String, Option<Suspension>)>>,
}

impl Suspensions {
    /// Shares suspensions through `cluster` from now on.
    pub fn share(&self, cluster: &Cluster) {
        let _ = self.inner.cluster.set(cluster.clone());
    }

    /// Queues a local change for Redis (published within a second, or on Redis' return).
    pub(super) fn publish(&self, domain: &str, s: Option<&Suspension>) {
        if self.inner.cluster.get().is_some() {
            self.inner
                .shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((domain.to_string(), s.cloned()));
        }
    }

    /// Keeps the node's copy and Redis in step until `shutdown`.
    pub async fn run_shared(self, shutdown: CancellationToken) {
        let Some(cluster) = self.inner.cluster.get().cloned() else {
            return;
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut epoch: Option<String> = None;
        loop {
            if cluster.is_up()
                && let Err(e) = self.sync(&cluster, &mut seen, &mut epoch).await
            {
                tracing::debug!(error = %e, "suspension sync: Redis lost");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    async fn sync(
        &self,
        cluster: &Cluster,
        seen: &mut HashSet<String>,
        epoch: &mut Option<String>,
    ) -> Result<(), ClusterError> {
        let hash = cluster.key("susp");
        let mut conn = cluster.connection();
        let pending: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !pending.is_empty() {
            let mut pipe = redis::pipe();
            for (domain, s) in &pending {
                match s.as_ref().map(serde_json::to_string) {
                    Some(Ok(json)) => pipe.hset(&hash, domain, json).ignore(),
                    // A lift: the domain's shared bounce window starts afresh too.
                    _ => pipe
                        .hdel(&hash, domain)
                        .ignore()
                        .del(&super::shared_window::window_keys(cluster, domain))
                        .ignore(),
                };
            }
            if let Err(e) = cluster.guard(pipe.query_async::<()>(&mut conn)).await {
                let mut p = self
                    .inner
                    .shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let newer = std::mem::replace(&mut *p, pending);
                p.extend(newer);
                return Err(e);
            }
        }
        let mut read = redis::pipe();
        read.get(cluster.key("epoch")).hgetall(&hash);
        let (now_epoch, remote): (Option<String>, std::collections::HashMap<String, String>) =
            cluster.guard(read.query_async(&mut conn)).await?;
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
        for s in self.list() {
            if remote.contains_key(&s.domain) {
                continue;
            }
            if seen.contains(&s.domain) {
                tracing::info!(domain = %s.domain, "suspension lifted by another node");
                self.lift_local(&s.domain);
            } else {
                self.publish(&s.domain, Some(&s));
            }
        }
        *seen = remote.into_keys().collect();
        Ok(())
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
