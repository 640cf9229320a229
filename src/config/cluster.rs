//! `[cluster]`: several mxgate nodes sharing the state that protects the sender's reputation
//! through Redis (issue 18; SPEC fixes `redis_url`, `node_name`, `nodes`). Without
//! `redis_url` nothing is shared and the node is the embedded single-node default.

use std::time::Duration;

use serde::Deserialize;

use super::types::{HumanDuration, Secret};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://` for TLS; empty = single node.
    /// A secret: the URL carries the password.
    pub redis_url: Secret,
    /// This node's name in the shared log and in logs; empty = the machine's host name.
    pub node_name: String,
    /// How many nodes share the caps. While Redis is unreachable each node sends at most
    /// `cap / nodes` of a warming or provider cap: the share that cannot overshoot the cap
    /// however the mail is spread.
    pub nodes: u32,
    /// Prefix of every Redis key, so that one Redis can serve several clusters.
    pub key_prefix: String,
    /// A Redis command slower than this counts as Redis being down: the node falls back
    /// to its local copy rather than holding a session or a delivery on it.
    pub timeout: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: Secret::default(),
            node_name: String::new(),
            nodes: 2,
            key_prefix: "mxgate:".into(),
            timeout: HumanDuration(Duration::from_millis(500)),
        }
    }
}

impl ClusterConfig {
    /// Whether the node shares state (`redis_url` set).
    pub fn enabled(&self) -> bool {
        !self.redis_url.expose().trim().is_empty()
    }

    /// `node_name`, else the kernel's host name, else `mxgate`.
    pub fn node(&self) -> String {
        let configured = self.node_name.trim();
        if !configured.is_empty() {
            return configured.to_string();
        }
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| "mxgate".into())
    }

    /// Problems as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.enabled()
            && let Err(e) = redis::Client::open(self.redis_url.expose().trim())
        {
            // The error names the part that is wrong, never the password.
            p.push((
                "cluster.redis_url",
                format!("not a redis://, rediss:// or unix URL ({:?})", e.kind()),
            ));
        }
        if self.nodes == 0 || self.nodes > 1000 {
            p.push(("cluster.nodes", "must be 1..=1000".to_string()));
        }
        if self.key_prefix.is_empty() {
            p.push(("cluster.key_prefix", "must not be empty".to_string()));
        }
        if self.timeout.get().is_zero() {
            p.push(("cluster.timeout", "must be more than 0s".to_string()));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn cluster_is_off_by_default_and_a_bad_url_is_reported_with_its_line() {
        let c = Config::from_toml("", Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.cluster.enabled());
        assert_eq!(c.cluster.nodes, 2);
        let e = Config::from_toml(
            "[cluster]\nredis_url = \"http://x\"\nnodes = 0\n",
            Path::new("t.toml"),
        )
        .expect_err("bad cluster");
        let text = e.to_string();
        assert!(text.contains("t.toml:2: cluster.redis_url"), "{text}");
        assert!(text.contains("t.toml:3: cluster.nodes"), "{text}");
        let ok = Config::from_toml(
            "[cluster]\nredis_url = \"rediss://u:p@127.0.0.1:6380/1\"\nnode_name = \"a\"\n",
            Path::new("t.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.cluster.enabled());
        assert_eq!(ok.cluster.node(), "a");
        assert!(!format!("{:?}", ok.cluster).contains(":p@"));
    }
}
