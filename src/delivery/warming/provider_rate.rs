//! The provider-rate step of [`Warming::admit`]: the hourly cap of (sending domain,
//! provider) — new or warmed sender, scaled down by the [`throttle`] level — enforced by a
//! governor limiter ([`rate`]), and the persisted `h/` hour counters that seed a limiter
//! after a restart.
//!
//! Also the provider's `connections` limit ([`Warming::connection`]), the other per-provider
//! limit. Separate from the daily caps in `warming.rs` because it is the only part with
//! in-memory state that must be rebuilt (limiters) and whose window is not a UTC day.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{State, Ticket, Warming};
use crate::config::ProviderRate;
use crate::delivery::rate::{self, Check, HOUR_MS, ProviderLimiter};
use crate::delivery::throttle;
use crate::queue::Hold;

impl Warming {
    /// Takes a cell of the provider's hourly rate, or the hold until the next free one.
    /// `Ok(false)`: the provider has no configured rate (nor a throttle).
    pub(super) fn provider_rate(
        &self,
        st: &mut State,
        domain: &str,
        provider: &str,
        new_sender: bool,
        now: u64,
    ) -> Result<bool, Hold> {
        let Some(rate) = self.policy.rates.get(provider) else {
            return Ok(false);
        };
        let hour = now / HOUR_MS;
        let (level, hcap) = self.hourly_cap(st, rate, domain, provider, new_sender, now);
        let key = format!("h/{domain}/{provider}/{hour}");
        let hour_used = self.get(st, &key).unwrap_or(0);
        let mut limiter = self.limiter(st, domain, provider, hcap, now, hour);
        let check = limiter.check();
        let cap = limiter.cap();
        st.limiters
            .insert((domain.to_string(), provider.to_string()), limiter);
        let m = &self.inner.metrics;
        match check {
            Check::Denied { retry_at_ms } => {
                m.provider_rate(domain, provider, cap, hour_used, level);
                m.warming_deferral(domain, "provider rate");
                // The next free cell, or the throttle's next recovery step if sooner.
                let retry_at = st
                    .throttles
                    .recovers_at(domain, provider, self.policy.quiet_ms)
                    .map_or(retry_at_ms, |t| t.min(retry_at_ms));
                let wait_s = retry_at.saturating_sub(now).div_ceil(1000);
                Err(Hold {
                    reason: format!(
                        "provider rate: {cap} of {cap} messages an hour from {domain} to {provider} in use; next slot in {wait_s} s"
                    ),
                    retry_at,
                })
            }
            Check::Allowed { .. } => {
                self.put(st, &key, hour_used + 1);
                m.provider_rate(domain, provider, cap, hour_used + 1, level);
                Ok(true)
            }
        }
    }

    /// (throttle level, hourly cap at that level) of (`domain`, `provider`) now.
    fn hourly_cap(
        &self,
        st: &mut State,
        rate: &ProviderRate,
        domain: &str,
        provider: &str,
        new_sender: bool,
        now: u64,
    ) -> (u32, u64) {
        let base = if new_sender {
            rate.new_hourly
        } else {
            rate.warmed_hourly
        };
        let (level, change) = st
            .throttles
            .level(domain, provider, now, self.policy.quiet_ms);
        if let Some(c) = change {
            tracing::info!(
                sending_domain = %domain, provider = %provider, from = c.from, to = c.to,
                hourly_cap = throttle::scaled(base, c.to),
                "provider throttle recovers a step after a quiet period"
            );
        }
        (level, throttle::scaled(base, level))
    }

    /// The rate limiter of (`domain`, `provider`) at hourly cap `hcap`: the one in use, a
    /// replacement of the new quota seeded with the old one's cells in use when the cap
    /// changed, or (first use since start) one seeded from the persisted hourly counters.
    fn limiter(
        &self,
        st: &mut State,
        domain: &str,
        provider: &str,
        hcap: u64,
        now: u64,
        hour: u64,
    ) -> ProviderLimiter {
        let clock = &self.inner.clock;
        match st
            .limiters
            .remove(&(domain.to_string(), provider.to_string()))
        {
            Some(l) if l.cap() == hcap.clamp(1, u64::from(u32::MAX)) => l,
            Some(old) => {
                let used = old.used_at(now);
                tracing::debug!(
                    sending_domain = %domain, provider = %provider, from = old.cap(), to = hcap,
                    used, "provider hourly cap changed: new limiter, use carried over"
                );
                ProviderLimiter::new(hcap, used, clock)
            }
            None => {
                let this = self
                    .get(st, &format!("h/{domain}/{provider}/{hour}"))
                    .unwrap_or(0);
                let before = hour
                    .checked_sub(1)
                    .and_then(|h| self.get(st, &format!("h/{domain}/{provider}/{h}")))
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
