//! Joining the cluster at start (issue 18): the Redis handle, the shared token key, the
//! suppression list's sync, the warming counters' share and the suspensions' sync. `[cluster]` is read at start
//! only: a reload does not join, leave or move a node (that is a restart).

use std::path::Path;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StartError;
use super::runtime::Stable;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::events::{Event, Events, Kind};
use crate::routing::token::TokenKey;

/// The node's copy of the cluster's token key, for starts while Redis is down.
const CLUSTER_KEY_FILE: &str = "verp.cluster.key";

/// The cluster `config` names (none without `redis_url`), with the stores shared through it.
pub(super) async fn join(config: &Config, stable: &mut Stable) -> Result<(), StartError> {
    let Some(cluster) = Cluster::new(&config.cluster, stable.metrics.clone())? else {
        return Ok(());
    };
    stable.token_key = token_key(&cluster, &stable.token_key, &config.server.data_dir).await;
    stable.suppressions.share(&cluster)?;
    stable.warming.share(&cluster);
    stable.suspensions.share(&cluster)?;
    stable.cluster = Some(cluster);
    Ok(())
}

/// The cluster's token key (this node's, offered, if it is the first); while Redis is
/// down, the copy kept from the last time, else the node's own with a warning.
async fn token_key(cluster: &Cluster, own: &TokenKey, data_dir: &Path) -> TokenKey {
    let path = data_dir.join(CLUSTER_KEY_FILE);
    let shared = match cluster.shared_secret("token_key", own.bytes()).await {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).ok(),
        Err(e) => {
            tracing::warn!(error = %e, "cluster: cannot read the shared token key; using the last copy");
            None
        }
    };
    let kept = || {
        std::fs::read(&path)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    };
    let Some(key) = shared.or_else(kept) else {
        tracing::warn!(
            "cluster: no shared token key yet; this node's tokens are valid on this node only until it reaches Redis at a restart"
        );
        return own.clone();
    };
    let adopted = own.adopt(key);
    if let Err(e) = adopted.store(&path) {
        tracing::warn!(error = %e, path = %path.display(), "cannot keep the cluster's token key");
    }
    adopted
}

/// The cluster's background tasks: the health check and the suppression list's sync.
pub(super) fn spawn(stable: &Stable, tracker: &TaskTracker) {
    let Some(cluster) = &stable.cluster else {
        return;
    };
    tracker.spawn(cluster.clone().watch_health(stable.shutdown.clone()));
    tracker.spawn(
        stable
            .suppressions
            .clone()
            .run_shared(stable.shutdown.clone()),
    );
    tracker.spawn(stable.warming.clone().run_shared(stable.shutdown.clone()));
    tracker.spawn(
        stable
            .suspensions
            .clone()
            .run_shared(stable.shutdown.clone()),
    );
    tracker.spawn(announce(
        cluster.clone(),
        stable.events.clone(),
        stable.shutdown.clone(),
    ));
}

/// An event to the ERP each time this node loses or regains Redis (not for the first
/// connection at start: the node was never without it).
async fn announce(cluster: Cluster, events: Events, shutdown: CancellationToken) {
    let mut up = cluster.subscribe();
    let mut was = *up.borrow_and_update();
    let mut seen_up = was;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = up.changed() => if r.is_err() { return },
        }
        let now = *up.borrow_and_update();
        if now == was {
            continue;
        }
        was = now;
        if now && !seen_up {
            seen_up = true;
            continue;
        }
        let (event, reply) = if now {
            (
                Kind::ClusterUp,
                "Redis reachable again; writes made meanwhile replayed",
            )
        } else {
            (
                Kind::ClusterDown,
                "Redis unreachable; local copy in use, caps at cap / cluster.nodes",
            )
        };
        events.emit(Event {
            id: 0,
            event,
            timestamp: String::new(),
            queue_id: String::new(),
            message_id: String::new(),
            sender: cluster.node().to_string(),
            recipient: String::new(),
            reply: reply.to_string(),
            category: None,
            status: None,
            attempts: 0,
            direction: "outbound",
            feedback_type: None,
            provider: None,
        });
    }
}
