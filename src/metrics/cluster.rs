//! `mxgate_cluster_*` (issue 18): whether this node reaches Redis and how much of its shared
//! state waits to be replayed there. Apart from the stage metrics because only a node with
//! `[cluster] redis_url` records them.

use metrics::Recorder;

use super::Metrics;

/// 1 while this node reaches Redis, 0 while it works from its local copy (SPEC name).
pub const CLUSTER_REDIS_UP: &str = "mxgate_cluster_redis_up";
/// Writes made while Redis was unreachable and not replayed yet, by kind.
pub const CLUSTER_PENDING: &str = "mxgate_cluster_pending_writes";
/// Writes replayed to Redis after it came back, by kind.
pub const CLUSTER_REPLAYED: &str = "mxgate_cluster_replayed_total";
/// Redis up/down transitions seen by this node, by the new state.
pub const CLUSTER_TRANSITIONS: &str = "mxgate_cluster_transitions_total";

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        CLUSTER_REDIS_UP,
        "1 while this node reaches the cluster's Redis, 0 while it works from its local copy",
    ),
    (
        CLUSTER_PENDING,
        "Shared-state writes made while Redis was unreachable, waiting to be replayed, by kind",
    ),
    (
        CLUSTER_REPLAYED,
        "Shared-state writes replayed to Redis after it came back, by kind",
    ),
    (
        CLUSTER_TRANSITIONS,
        "Redis reachability changes seen by this node, by new state (up|down)",
    ),
];

impl Metrics {
    /// Describes the cluster metrics and shows Redis down until the first answer.
    pub fn declare_cluster(&self) {
        for (name, help) in DESCRIPTIONS {
            self.recorder
                .describe_gauge((*name).into(), None, (*help).into());
        }
        self.gauge(CLUSTER_REDIS_UP, &[], 0.0);
        for state in ["up", "down"] {
            self.counter(CLUSTER_TRANSITIONS, &[("state", state)], 0);
        }
    }

    pub fn cluster_redis_up(&self, up: bool) {
        self.gauge(CLUSTER_REDIS_UP, &[], if up { 1.0 } else { 0.0 });
    }

    pub fn cluster_transition(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        self.counter(CLUSTER_TRANSITIONS, &[("state", state)], 1);
    }

    /// `kind`: `suppression` | `warming`.
    pub fn cluster_pending(&self, kind: &'static str, n: u64) {
        self.gauge(CLUSTER_PENDING, &[("kind", kind)], n as f64);
    }

    pub fn cluster_replayed(&self, kind: &'static str, n: u64) {
        self.counter(CLUSTER_REPLAYED, &[("kind", kind)], n);
    }
}
