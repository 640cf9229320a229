//! Caps shared by a cluster's nodes (issue 18): the sending domain's day counter and the
//! provider's hourly GCRA live in Redis, checked and taken in one Lua script, one round
//! trip per admission. The local admission runs first as ever (it keeps this node's own
//! counts, the throttle and the limiters); Redis then says whether the cluster as a whole
//! has room.
//!
//! Redis down or slow: the local caps shrink to `cap / cluster.nodes` ([`Warming::share`]),
//! which no spread of mail over the nodes can overshoot; each day slot taken meanwhile is
//! kept as a pending count (`p/<domain>/<day>` in the `warming` family) and added to the
//! cluster's counter when Redis is back. Source IP tiers stay per node: an IP belongs to
//! one host. The provider GCRA of a pool IP is its own cell (`warm:h:<domain>:<provider>:<ip>`,
//! [`RateKey::cluster_key`](crate::delivery::throttle::RateKey::cluster_key)): nodes that
//! share an IP (behind one NAT address, say) share its rate.

use tokio_util::sync::CancellationToken;

use super::{DAY_MS, Ticket, Warming};
use crate::cluster::Cluster;
use crate::db::{DbError, prefix_end};
use crate::delivery::plan::Plan;
use crate::queue::{Hold, QueuedMessage};

/// Day cap and provider GCRA in one step. KEYS: day counter, provider cell. ARGV: day cap
/// (-1 = none), now (ms), hourly cap (0 = unrated), day counter TTL (s).
/// Returns {0, sent} admitted, {1, sent} day cap reached, {2, retry_at_ms} provider rate.
const ADMIT: &str = r"
local cap = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local hcap = tonumber(ARGV[3])
local sent = tonumber(redis.call('GET', KEYS[1]) or '0')
if cap >= 0 and sent >= cap then return {1, sent} end
if hcap > 0 then
  local t = math.floor(3600000 / hcap)
  local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tat < now then tat = now end
  local allow_at = tat + t - t * hcap
  if now < allow_at then return {2, allow_at} end
  redis.call('SET', KEYS[2], tat + t, 'PX', tat + t - now + 1000)
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {0, sent + 1}
";

/// Hashed once: `invoke_async` sends `EVALSHA` and loads the script only when Redis lacks it.
static ADMIT_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ADMIT));

const PENDING: &[u8] = b"p/";

/// The cluster's answer to one admitted ticket.
enum Shared {
    Admitted,
    /// Over a shared cap: the `reason` label and the hold.
    Held(&'static str, Hold),
    /// Redis failed under the call: admit again (the node's share now decides).
    Retry,
}

/// Of a hold kept from an earlier IP and a new one, the one that ends first.
fn earlier(kept: Option<Hold>, new: Hold) -> Hold {
    match kept {
        Some(k) if k.retry_at <= new.retry_at => k,
        _ => new,
    }
}

impl Warming {
    /// Shares the caps through `cluster` from now on.
    pub fn share(&self, cluster: &Cluster) {
        let _ = self.inner.cluster.set(cluster.clone());
    }

    /// The divisor of every cap now: `cluster.nodes` while the cluster's Redis is down,
    /// else 1.
    pub(super) fn share_divisor(&self) -> u64 {
        match self.inner.cluster.get() {
            Some(c) if !c.is_up() => u64::from(c.nodes().max(1)),
            _ => 1,
        }
    }

    /// [`Warming::admit`], then the cluster's shared check when there is one. A pool IP
    /// whose hourly rate the cluster has spent is passed over for the pool's next IP, as
    /// the local admission does; the hold with the earliest retry time when none has room.
    pub async fn admit_shared(
        &self,
        msg: &QueuedMessage,
        plan: &mut Plan,
    ) -> Result<Option<Ticket>, Hold> {
        let mut exclude = Vec::new();
        let mut earliest: Option<Hold> = None;
        loop {
            let ticket = match self.admit(msg, plan, &exclude) {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(None),
                // The IPs left are spent locally: the earlier of that and the cluster's hold.
                Err(h) => return Err(earlier(earliest, h)),
            };
            let (why, hold) = match self.admit_cluster(&ticket).await {
                Shared::Admitted => return Ok(Some(ticket)),
                Shared::Retry => {
                    // Redis went away under this admission: the node's share decides instead.
                    self.release(ticket);
                    continue;
                }
                Shared::Held(why, hold) => (why, hold),
            };
            let ip: Option<std::net::IpAddr> =
                ticket.rate.ip.as_deref().and_then(|i| i.parse().ok());
            let domain = ticket.domain.clone();
            self.release(ticket);
            let hold = earlier(earliest.take(), hold);
            match ip {
                Some(ip) if why == "provider rate" && exclude.len() + 1 < plan.sources.len() => {
                    exclude.push(ip);
                    earliest = Some(hold);
                }
                _ => {
                    self.inner.metrics.warming_deferral(&domain, why);
                    return Err(hold);
                }
            }
        }
    }

    /// The cluster's check of an admitted ticket: day cap and provider GCRA in Redis.
    async fn admit_cluster(&self, ticket: &Ticket) -> Shared {
        let Some(cluster) = self.inner.cluster.get() else {
            return Shared::Admitted;
        };
        if ticket.pending {
            self.add_pending(&ticket.day_key, 1);
            return Shared::Admitted;
        }
        let now = self.inner.clock.now_ms();
        let today = now / DAY_MS;
        let mut script = ADMIT_SCRIPT.prepare_invoke();
        script
            .key(cluster.key(&format!("warm:d:{}:{today}", ticket.domain)))
            .key(cluster.key(&ticket.rate.cluster_key()))
            .arg(ticket.cap.map_or(-1, |c| c as i64))
            .arg(now)
            .arg(ticket.hourly.unwrap_or(0))
            .arg(2 * 86_400);
        let mut conn = cluster.connection();
        let answer: Result<(u8, u64), _> = cluster.guard(script.invoke_async(&mut conn)).await;
        match answer {
            Ok((0, _)) => Shared::Admitted,
            Ok((1, sent)) => Shared::Held(
                "warming cap",
                Hold {
                    reason: format!(
                        "warming cap: {} sent {sent} of {} messages today across the cluster; next window at the start of the next UTC day",
                        ticket.domain,
                        ticket.cap.unwrap_or(0)
                    ),
                    retry_at: (today + 1) * DAY_MS,
                },
            ),
            Ok((_, retry_at)) => Shared::Held(
                "provider rate",
                Hold {
                    reason: format!(
                        "provider rate: {} messages an hour {} in use across the cluster",
                        ticket.hourly.unwrap_or(0),
                        ticket.rate.describe()
                    ),
                    retry_at,
                },
            ),
            Err(_) => Shared::Retry,
        }
    }

    /// Gives back the local day slots of a ticket the cluster refused.
    fn release(&self, ticket: Ticket) {
        let Ok(mut st) = self.inner.state.lock() else {
            return;
        };
        let reserved_ip = ticket.ip.iter().flat_map(super::IpSlot::keys);
        for key in std::iter::once(&ticket.day_key).chain(reserved_ip) {
            let n = self.get(&mut st, key).unwrap_or(0);
            self.put(&mut st, key, n.saturating_sub(1));
        }
    }

    /// A deferred attempt's day slot back to the cluster (or out of the pending count).
    pub(super) fn give_back_shared(&self, ticket: &Ticket) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        if ticket.pending {
            self.add_pending(&ticket.day_key, -1);
            return;
        }
        let day = ticket.day_key.rsplit('/').next().unwrap_or_default();
        let key = cluster.key(&format!("warm:d:{}:{day}", ticket.domain));
        let cluster = cluster.clone();
        // Lost if Redis fails now: the cluster then counts one send too many, the safe side.
        tokio::spawn(async move {
            let mut conn = cluster.connection();
            let decr = redis::cmd("DECR").arg(key).to_owned();
            let _ = cluster.guard(decr.query_async::<i64>(&mut conn)).await;
        });
    }

    fn add_pending(&self, day_key: &str, delta: i64) {
        let key = [PENDING, day_key.trim_start_matches("d/").as_bytes()].concat();
        let r = self.inner.col.with(|db| {
            let old = db
                .get(&key)?
                .and_then(|v| v.as_slice().try_into().ok())
                .map_or(0, i64::from_le_bytes);
            Ok::<_, DbError>(db.put(&key, (old + delta).max(0).to_le_bytes())?)
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot keep a pending warming count for the cluster");
        }
    }

    /// Adds the pending counts to the cluster's counters each time Redis comes back.
    pub async fn run_shared(self, shutdown: CancellationToken) {
        let Some(cluster) = self.inner.cluster.get().cloned() else {
            return;
        };
        let mut up = cluster.subscribe();
        loop {
            if *up.borrow_and_update() {
                self.replay(&cluster).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = up.changed() => if r.is_err() { return },
            }
        }
    }

    async fn replay(&self, cluster: &Cluster) {
        let pending = self.inner.col.with(|db| {
            let mut out = Vec::new();
            for item in db.scan(PENDING, prefix_end(PENDING)) {
                let (k, v) = item?;
                let n = v.as_ref().try_into().map_or(0, i64::from_le_bytes);
                out.push((k.to_vec(), n));
            }
            Ok::<_, DbError>(out)
        });
        let Ok(pending) = pending else { return };
        if pending.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (k, n) in &pending {
            let rest = String::from_utf8_lossy(&k[PENDING.len()..]).replace('/', ":");
            let key = cluster.key(&format!("warm:d:{rest}"));
            pipe.incr(&key, *n)
                .ignore()
                .expire(&key, 2 * 86_400)
                .ignore();
        }
        let mut conn = cluster.connection();
        if cluster
            .guard(pipe.query_async::<()>(&mut conn))
            .await
            .is_err()
        {
            return;
        }
        let total: i64 = pending.iter().map(|(_, n)| n).sum();
        let _ = self.inner.col.with(|db| {
            for (k, _) in &pending {
                db.delete(k)?;
            }
            Ok::<_, DbError>(())
        });
        cluster
            .metrics()
            .cluster_replayed("warming", total.max(0) as u64);
        tracing::info!(
            slots = total,
            "cluster: warming counts made without Redis replayed"
        );
    }
}
