//! One provider's hourly rate for one sending domain (issue 6 §2), as a `governor` GCRA
//! limiter: `Quota::per_hour(cap)` lets a burst of `cap` through, then one message every
//! `1 h / cap` — held mail is paced through the hour instead of all going at its top.
//!
//! Time is the crate's [`Clock`] (tests step it), seen by governor through [`GovClock`].
//! governor's state is in memory only, and a limiter's quota is fixed: a new cap (throttle
//! level, or the domain leaving warming) means a new limiter, which [`ProviderLimiter::new`]
//! seeds with the cells still in use so that neither a cap change nor a restart grants a
//! fresh burst (the caller persists an hourly counter to seed from after a restart).

use std::num::NonZeroU32;

use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

pub const HOUR_MS: u64 = 3_600_000;
const NS_PER_MS: u64 = 1_000_000;

/// The crate clock as a governor clock: nanoseconds since the Unix epoch (at the crate
/// clock's millisecond resolution).
#[derive(Clone, Debug)]
pub struct GovClock(pub Clock);

impl governor::clock::Clock for GovClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.now_ms().saturating_mul(NS_PER_MS))
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, GovClock, StateInformationMiddleware>;

/// What [`ProviderLimiter::check`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A cell was taken; `used` cells of the cap are now in use.
    Allowed { used: u32 },
    /// Every cell is in use; the next one frees at `retry_at_ms` (governor's `NotUntil`).
    Denied { retry_at_ms: u64 },
}

/// A GCRA limiter of `cap` messages an hour, plus the last measured use (governor does not
/// expose its state; the use is what a replacement limiter is seeded with).
pub struct ProviderLimiter {
    limiter: Limiter,
    cap: NonZeroU32,
    clock: Clock,
    /// Cells in use at `at_ms`, as measured by the last check.
    used: u32,
    at_ms: u64,
}

impl std::fmt::Debug for ProviderLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderLimiter")
            .field("cap", &self.cap)
            .field("used", &self.used)
            .field("at_ms", &self.at_ms)
            .finish()
    }
}

impl ProviderLimiter {
    /// A limiter of `cap` an hour (at least 1) with `used` of its cells already taken now
    /// (at most `cap`: use beyond a smaller new cap is not carried further).
    pub fn new(cap: u64, used: u64, clock: &Clock) -> ProviderLimiter {
        let cap =
            NonZeroU32::new(u32::try_from(cap).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct_with_clock(Quota::per_hour(cap), GovClock(clock.clone()))
            .with_middleware::<StateInformationMiddleware>();
        let seed = u32::try_from(used).unwrap_or(u32::MAX).min(cap.get());
        let mut used = 0;
        if let Some(n) = NonZeroU32::new(seed) {
            // n ≤ burst on a fresh limiter: always conforms.
            if let Ok(Ok(snapshot)) = limiter.check_n(n) {
                used = cap.get() - snapshot.remaining_burst_capacity().min(cap.get());
            }
        }
        ProviderLimiter {
            limiter,
            cap,
            clock: clock.clone(),
            used,
            at_ms: clock.now_ms(),
        }
    }

    pub fn cap(&self) -> u64 {
        u64::from(self.cap.get())
    }

    /// Cells in use at `now_ms`: the last measured use less what replenished since (one
    /// cell per `1 h / cap`).
    pub fn used_at(&self, now_ms: u64) -> u64 {
        let elapsed = u128::from(now_ms.saturating_sub(self.at_ms));
        let freed = elapsed * u128::from(self.cap.get()) / u128::from(HOUR_MS);
        u64::from(self.used).saturating_sub(u64::try_from(freed).unwrap_or(u64::MAX))
    }

    /// Takes a cell, or says when the next one frees.
    pub fn check(&mut self) -> Check {
        let now_ms = self.clock.now_ms();
        self.at_ms = now_ms;
        match self.limiter.check() {
            Ok(snapshot) => {
                let cap = self.cap.get();
                self.used = cap - snapshot.remaining_burst_capacity().min(cap);
                Check::Allowed { used: self.used }
            }
            Err(not_until) => {
                self.used = self.cap.get();
                // Rounded up to the next millisecond: at that instant the cell is free.
                let at_ns = u64::from(not_until.earliest_possible());
                let retry_at_ms = at_ns.div_ceil(NS_PER_MS).max(now_ms + 1);
                Check::Denied { retry_at_ms }
            }
        }
    }
}

/// The use to seed a provider's limiter with after a restart, from the persisted hourly
/// counters: this clock hour's count, plus the share of the previous hour's count that still
/// lies within the last 60 minutes (rounded up). An upper bound of what the lost limiter
/// held: a restart never grants more than a limiter that kept running would have.
pub fn recent_use(this_hour: u64, previous_hour: u64, now_ms: u64) -> u64 {
    let into_hour = now_ms % HOUR_MS;
    let share = u128::from(previous_hour) * u128::from(HOUR_MS - into_hour);
    let share = u64::try_from(share.div_ceil(u128::from(HOUR_MS))).unwrap_or(u64::MAX);
    this_hour.saturating_add(share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::Clock as _;
    use std::time::Duration;

    fn now_ns(clock: &Clock) -> u64 {
        u64::from(GovClock(clock.clone()).now())
    }

    fn allowed(l: &mut ProviderLimiter) -> bool {
        matches!(l.check(), Check::Allowed { .. })
    }

    #[test]
    fn a_burst_of_cap_then_one_cell_per_hour_over_cap() {
        let clock = Clock::system();
        let mut l = ProviderLimiter::new(4, 0, &clock);
        let start = clock.now_ms();
        for i in 1..=4 {
            assert_eq!(l.check(), Check::Allowed { used: i });
        }
        let Check::Denied { retry_at_ms } = l.check() else {
            panic!("the fifth message of a 4/h burst was allowed");
        };
        // Paced: the next cell frees 15 minutes after the burst, not at the next hour.
        assert!(retry_at_ms > start + 14 * 60_000, "{retry_at_ms} - {start}");
        assert!(retry_at_ms <= clock.now_ms() + 15 * 60_000 + 1);
        clock.advance(Duration::from_millis(retry_at_ms - clock.now_ms()));
        assert!(allowed(&mut l));
        assert!(!allowed(&mut l));
        assert_eq!(l.used_at(clock.now_ms()), 4);
        clock.advance(Duration::from_secs(30 * 60));
        assert_eq!(l.used_at(clock.now_ms()), 2);
        assert!(allowed(&mut l));
        assert!(allowed(&mut l));
        assert!(!allowed(&mut l));
    }

    #[test]
    fn a_seeded_limiter_grants_only_what_is_left() {
        let clock = Clock::system();
        let mut l = ProviderLimiter::new(3, 2, &clock);
        assert_eq!(l.check(), Check::Allowed { used: 3 });
        assert!(!allowed(&mut l));
        // Seeding beyond a smaller cap fills it; a zero cap still lets one an hour through.
        let mut full = ProviderLimiter::new(2, 10, &clock);
        assert!(!allowed(&mut full));
        let mut one = ProviderLimiter::new(0, 0, &clock);
        assert_eq!(one.cap(), 1);
        assert!(allowed(&mut one));
        assert!(!allowed(&mut one));
    }

    #[test]
    fn the_governor_clock_follows_the_crate_clock() {
        let clock = Clock::system();
        let before = now_ns(&clock);
        clock.advance(Duration::from_secs(3600));
        assert!(now_ns(&clock) >= before + 3_600_000_000_000);
    }

    #[test]
    fn restart_seed_counts_the_last_sixty_minutes() {
        // 15 minutes into the hour: 3 this hour, 3/4 of last hour's 4.
        let now = 10 * HOUR_MS + 15 * 60_000;
        assert_eq!(recent_use(3, 4, now), 6);
        assert_eq!(recent_use(0, 1, now), 1);
        assert_eq!(recent_use(2, 0, 10 * HOUR_MS), 2);
        assert_eq!(recent_use(0, 5, 10 * HOUR_MS), 5);
    }
}
