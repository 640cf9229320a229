//! The provider-rate step of [`Warming::admit`]: the hourly cap of a [`RateKey`] — (sending
//! domain, provider), and the source IP when the mail leaves from an IP of a pool — new or
//! warmed sender, scaled down by the [`throttle`] level, enforced by a governor limiter
//! ([`rate`]), and the persisted `h/` hour counters that seed a limiter after a restart.
//!
//! Also the provider's `connections` limit ([`Warming::connection`]), the other per-provider
//! limit. Separate from the daily caps in `warming.rs` because it is the only part with
//! in-memory state that must be rebuilt (limiters) and whose window is not a UTC day.
//!
//! No migration from per-domain rates: a pool IP's counters start empty, and the old
//! per-domain counter (still the key of streams with one source IP) is not split over the
//! pool: a stream with one IP may share the sending domain, so that counter goes on
//! counting its sends, not the pool's. The hour of an upgrade may send up to one cap per
//! pool IP on top of what was sent before it, once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{State, Ticket, Warming};
use crate::config::ProviderRate;
use crate::delivery::rate::{self, Check, HOUR_MS, ProviderLimiter};
use crate::delivery::throttle::{self, RateKey};
use crate::queue::Hold;

impl Warming {
    /// Takes a cell of `key`'s hourly rate, or the hold until the next free one.
    /// `Ok(Some(hourly cap))` (the full cap, before a cluster node's share);
    /// `Ok(None)`: the provider has no configured rate (nor a throttle).
    /// The caller counts a hold in `mxgate_warming_deferrals_total` (once per recipient,
    /// however many IPs of a pool were tried).
    pub(super) fn provider_rate(
        &self,
        st: &mut State,
        key: &RateKey,
        new_sender: bool,
        now: u64,
    ) -> Result<Option<u64>, Hold> {
        let Some(rate) = self.policy.rates.get(&key.provider) else {
            return Ok(None);
        };
        let hour = now / HOUR_MS;
        let (level, full) = self.hourly_cap(st, rate, key, new_sender, now);
        let hcap = (full / self.share_divisor()).max(1);
        let hour_key = key.hour_key(hour);
        let hour_used = self.get(st, &hour_key).unwrap_or(0);
        let mut limiter = self.limiter(st, key, hcap, now, hour);
        let check = limiter.check();
        let cap = limiter.cap();
        st.limiters.insert(key.clone(), limiter);
        let m = &self.inner.metrics;
        let (d, p, ip) = (&key.domain, &key.provider, key.ip.as_deref());
        match check {
            Check::Denied { retry_at_ms } => {
                m.provider_rate(d, p, ip, cap, hour_used, level);
                // The next free cell, or the throttle's next recovery step if sooner.
                let retry_at = st
                    .throttles
                    .recovers_at(key, self.policy.quiet_ms)
                    .map_or(retry_at_ms, |t| t.min(retry_at_ms));
                let wait_s = retry_at.saturating_sub(now).div_ceil(1000);
                Err(Hold {
                    reason: format!(
                        "provider rate: {cap} of {cap} messages an hour {} in use; next slot in {wait_s} s",
                        key.describe()
                    ),
                    retry_at,
                })
            }
            Check::Allowed { .. } => {
                self.put(st, &hour_key, hour_used + 1);
                m.provider_rate(d, p, ip, cap, hour_used + 1, level);
                Ok(Some(full))
            }
        }
    }

    /// (throttle level, hourly cap at that level) of `key` now.
    fn hourly_cap(
        &self,
        st: &mut State,
        rate: &ProviderRate,
        key: &RateKey,
        new_sender: bool,
        now: u64,
    ) -> (u32, u64) {
        let base = if new_sender {
            rate.new_hourly
        } else {
            rate.warmed_hourly
        };
        let (level, change) = st.throttles.level(key, now, self.policy.quiet_ms);
        if let Some(c) = change {
            tracing::info!(
                sending_domain = %key.domain, provider = %key.provider,
                sending_ip = key.ip.as_deref().unwrap_or(""), from = c.from, to = c.to,
                hourly_cap = throttle::scaled(base, c.to),
                "provider throttle recovers a step after a quiet period"
            );
        }
        (level, throttle::scaled(base, level))
    }

    /// The rate limiter of `key` at hourly cap `hcap`: the one in use, a replacement of the
    /// new quota seeded with the old one's cells in use when the cap changed, or (first use
    /// since start) one seeded from the persisted hourly counters.
    fn limiter(
        &self,
        st: &mut State,
        key: &RateKey,
        hcap: u64,
        now: u64,
        hour: u64,
    ) -> ProviderLimiter {
        let clock = &self.inner.clock;
        match st.limiters.remove(key) {
            Some(l) if l.cap() == hcap.clamp(1, u64::from(u32::MAX)) => l,
            Some(old) => {
                let used = old.used_at(now);
                tracing::debug!(
                    sending_domain = %key.domain, provider = %key.provider,
                    sending_ip = key.ip.as_deref().unwrap_or(""), from = old.cap(), to = hcap,
                    used, "provider hourly cap changed: new limiter, use carried over"
                );
                ProviderLimiter::new(hcap, used, clock)
            }
            None => {
                let this = self.get(st, &key.hour_key(hour)).unwrap_or(0);
                let before = hour
                    .checked_sub(1)
                    .and_then(|h| self.get(st, &key.hour_key(h)))
                    .unwrap_or(0);
                ProviderLimiter::new(hcap, rate::recent_use(this, before, now), clock)
            }
        }
    }

    /// Waits for one of the provider's `connections` (held for the attempt); `None` when
    /// the provider has no limit.
    pub async fn connection(&self, ticket: &Ticket) -> Option<OwnedSemaphorePermit> {
        let n = self.policy.rates.get(&ticket.provider)?.connections?;
        let sem = self
            .inner
            .limits
            .lock()
            .ok()?
            .entry((ticket.provider.clone(), n))
            .or_insert_with(|| Arc::new(Semaphore::new(n.max(1))))
            .clone();
        sem.acquire_owned().await.ok()
    }
}
