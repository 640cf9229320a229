//! Several nodes, one reputation (issue 18): the Redis connection the shared stores use
//! ([`suppression`](crate::suppression), [`warming`](crate::delivery::warming), the token
//! key) and the node's view of whether Redis is there.
//!
//! What stays per node: the RocksDB spool (a message lives on the node that accepted it)
//! and a local copy of every shared store, which is what the node works from while Redis is
//! down or slow. Nothing waits on Redis for longer than `cluster.timeout`: a command that
//! fails or is late marks Redis down at once, the stores fall back (suppression reads its
//! local copy, caps shrink to `cap / cluster.nodes`) and queue their writes; the health
//! check marks it up again, and the stores replay what they queued
//! ([`Cluster::subscribe`] tells them).
//!
//! One [`ConnectionManager`] (multiplexed, reconnecting) carries every command; a blocking
//! stream read gets a connection of its own ([`Cluster::dedicated`]) so that it never
//! delays an admission behind it.

mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::metrics::Metrics;

/// How often the health check pings Redis (and so how soon a node notices it is back).
const HEALTH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Handle on the cluster's Redis; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    node: String,
    nodes: u32,
    prefix: String,
    timeout: Duration,
    up: watch::Sender<bool>,
    metrics: Metrics,
}

impl Cluster {
    /// The cluster `config` describes; `None` without `redis_url`. Connects lazily: a node
    /// starts (and works) while Redis is down.
    pub fn new(config: &ClusterConfig, metrics: Metrics) -> Result<Option<Cluster>, ClusterError> {
        if !config.enabled() {
            return Ok(None);
        }
        let client = redis::Client::open(config.redis_url.expose().trim())?;
        let timeout = config.timeout.get();
        // One retry: the manager reconnects in the background; a caller must not wait
        // through a back-off on the admission path.
        let cm = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cm)?;
        metrics.declare_cluster();
        let node = config.node();
        tracing::info!(node = %node, nodes = config.nodes, "cluster: shared state on Redis");
        Ok(Some(Cluster {
            inner: Arc::new(Inner {
                client,
                conn,
                node,
                nodes: config.nodes,
                prefix: config.key_prefix.clone(),
                timeout,
                up: watch::Sender::new(false),
                metrics,
            }),
        }))
    }

    /// `<key_prefix><name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// `cluster.nodes`: the divisor of a cap while Redis is down.
    pub fn nodes(&self) -> u32 {
        self.inner.nodes
    }

    pub fn is_up(&self) -> bool {
        *self.inner.up.borrow()
    }

    /// Follows Redis' reachability: a store replays its queued writes on each `true`.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.up.subscribe()
    }

    /// The node's metrics (the stores record their `mxgate_cluster_*` figures here).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The shared connection (clone per use; it is a handle).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Runs one Redis exchange with the cluster's deadline; a failure or a late answer
    /// marks Redis down (the caller falls back).
    pub async fn guard<T>(
        &self,
        exchange: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, ClusterError> {
        let result = match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => ClusterError::Redis(e),
            Err(_) => ClusterError::Timeout(self.inner.timeout),
        };
        self.set_up(false, Some(&result));
        Err(result)
    }

    /// A connection of its own, for a blocking read of `block` at most (the stream follower).
    pub async fn dedicated(&self, block: Duration) -> Result<MultiplexedConnection, ClusterError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(block + self.inner.timeout));
        let conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&cfg);
        self.guard(conn).await
    }

    fn set_up(&self, up: bool, cause: Option<&ClusterError>) {
        let changed = self.inner.up.send_if_modified(|now| {
            let changed = *now != up;
            *now = up;
            changed
        });
        let m = &self.inner.metrics;
        m.cluster_redis_up(up);
        if !changed {
            return;
        }
        m.cluster_transition(up);
        match cause {
            None if up => tracing::info!(node = %self.node(), "cluster: Redis is reachable"),
            None => tracing::warn!(node = %self.node(), "cluster: Redis is unreachable"),
            Some(e) => tracing::warn!(
                node = %self.node(), error = %e,
                "cluster: Redis is unreachable; working from the local copy (caps / cluster.nodes), writes queued for replay"
            ),
        }
    }

    /// Pings Redis every second until `shutdown`: the one place Redis is marked up again.
    pub async fn watch_health(self, shutdown: CancellationToken) {
        loop {
            let mut conn = self.connection();
            let ping = redis::cmd("PING");
            if self
                .guard(ping.query_async::<String>(&mut conn))
                .await
                .is_ok()
            {
                self.set_up(true, None);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(HEALTH_EVERY) => {}
            }
        }
    }
}
