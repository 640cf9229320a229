//! The cluster's bounce window of a sending domain (issue 18): with N nodes each sending a
//! share of a domain's mail, a window per node sees 1/N of a bounce storm (and each node may
//! stay under `min_sends`), so with Redis up every final send goes into one window in Redis
//! and the threshold is judged on it.
//!
//! One round trip per final send: a Lua script pushes the outcome, trims the list to
//! `suspension.window`, keeps the bounce count beside it and returns the verdict. The node
//! that trips the window deletes it in the same step, so exactly one node suspends the
//! domain (one event) and the others adopt it from the shared suspensions; a domain already
//! suspended in Redis is not counted. Redis down or late: `None`, and the node's own
//! window judges ([`super::window`]).

use super::Suspensions;
use crate::cluster::Cluster;

/// KEYS: outcome list, its bounce count, the suspensions hash. ARGV: outcome (1 = permanent
/// bounce), window, min_sends, threshold_percent, domain.
/// Returns {1, bounces, sends} tripped (window deleted), {0, bounces, sends} not,
/// {2, 0, 0} suspended already.
const RECORD: &str = r"
if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1 then return {2, 0, 0} end
local cap = tonumber(ARGV[2])
local b = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[1])
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
while n > cap do
  if redis.call('LPOP', KEYS[1]) == '1' then b = b - 1 end
  n = n - 1
end
if n >= tonumber(ARGV[3]) and b * 100 > tonumber(ARGV[4]) * n then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {1, b, n}
end
redis.call('SET', KEYS[2], b)
return {0, b, n}
";

/// Hashed once: `invoke_async` sends `EVALSHA` and loads the script only when Redis lacks it.
static RECORD_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(RECORD));

/// The Redis keys of `domain`'s window: the outcome list and its bounce count.
pub(super) fn window_keys(cluster: &Cluster, domain: &str) -> [String; 2] {
    [
        cluster.key(&format!("susp:win:{domain}")),
        cluster.key(&format!("susp:win:{domain}:b")),
    ]
}

impl Suspensions {
    /// Records the send in the cluster's window: `Some(Some((bounces, sends)))` when it
    /// tripped, `Some(None)` when not, `None` without a cluster or while Redis is down.
    pub(super) async fn record_shared(
        &self,
        domain: &str,
        bounced: bool,
    ) -> Option<Option<(usize, usize)>> {
        let cluster = self.inner.cluster.get()?;
        if !cluster.is_up() {
            return None;
        }
        let [list, count] = window_keys(cluster, domain);
        let mut script = RECORD_SCRIPT.prepare_invoke();
        script
            .key(list)
            .key(count)
            .key(cluster.key("susp"))
            .arg(u8::from(bounced))
            .arg(self.cfg.window)
            .arg(self.cfg.min_sends)
            .arg(self.cfg.threshold_percent)
            .arg(domain);
        let mut conn = cluster.connection();
        match cluster.guard(script.invoke_async(&mut conn)).await {
            Ok((1u8, bounces, sends)) => Some(Some((bounces, sends))),
            Ok((_, _, _)) => Some(None),
            Err(e) => {
                tracing::debug!(domain, error = %e, "bounce window: Redis lost, judged on this node's");
                None
            }
        }
    }
}
