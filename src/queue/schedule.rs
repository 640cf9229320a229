//! Retry timing, as pure functions of (config, attempts, times, jitter) so that they are unit
//! tested without a clock: exponential backoff from `retry_initial`, doubling per attempt,
//! capped at `retry_max`, ±20% jitter (so a recipient backlog after an ERP outage does not
//! retry in lock-step), and expiry `expire_after` past the time the message was received.

use std::time::Duration;

use crate::config::QueueConfig;

/// Fraction of the delay that jitter may add or remove.
pub const JITTER: f64 = 0.2;

/// What happens to a recipient after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// Past `expire_after`: give up (state `expired`).
    Expire,
}

/// Delay before the retry that follows failed attempt number `attempts` (1 = the first
/// attempt failed). `jitter` in `[-1, 1]` scales the ±20% band (values outside are clamped).
/// The cap applies before jitter, so delays at the cap still spread out.
pub fn backoff(cfg: &QueueConfig, attempts: u32, jitter: f64) -> Duration {
    let initial = cfg.retry_initial.get();
    let max = cfg.retry_max.get().max(initial);
    // Float math: 2^attempts overflows integers long before it matters; the cap bounds it.
    let doublings = attempts.saturating_sub(1).min(1024) as i32;
    let base = (initial.as_secs_f64() * 2f64.powi(doublings)).min(max.as_secs_f64());
    let base = Duration::from_secs_f64(base);
    base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
}

/// The expiry instant of a message received at `received_ms`.
pub fn expires_at(cfg: &QueueConfig, received_ms: u64) -> u64 {
    received_ms.saturating_add(millis(cfg.expire_after.get()))
}

/// After failed attempt number `attempts` at `now_ms`: when to retry, or expire. A retry that
/// would land after the expiry instant is moved to it, so the last attempt happens right at
/// expiry rather than never.
pub fn after_failure(
    cfg: &QueueConfig,
    received_ms: u64,
    now_ms: u64,
    attempts: u32,
    jitter: f64,
) -> Next {
    let expiry = expires_at(cfg, received_ms);
    if now_ms >= expiry {
        return Next::Expire;
    }
    let at = now_ms.saturating_add(millis(backoff(cfg, attempts, jitter)));
    Next::RetryAt(at.min(expiry))
}

/// A fresh jitter value in `[-1, 1]`.
pub fn random_jitter() -> f64 {
    rand::random_range(-1.0..=1.0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn cfg(initial: u64, max: u64, expire: u64) -> QueueConfig {
        QueueConfig {
            retry_initial: HumanDuration::secs(initial),
            retry_max: HumanDuration::secs(max),
            expire_after: HumanDuration::secs(expire),
            ..QueueConfig::default()
        }
    }

    fn assert_close(d: Duration, secs: f64) {
        assert!(
            (d.as_secs_f64() - secs).abs() < 0.001,
            "{d:?} is not {secs}s"
        );
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_without_jitter() {
        let c = cfg(60, 3600, 86_400);
        let secs: Vec<u64> = (1..=8).map(|n| backoff(&c, n, 0.0).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn backoff_is_capped_even_after_very_many_attempts() {
        let c = cfg(60, 3600, 86_400);
        for n in [30, 31, 32, 33, 63, 64, 1000, u32::MAX] {
            assert_eq!(
                backoff(&c, n, 0.0),
                Duration::from_secs(3600),
                "attempt {n}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let c = cfg(100, 3600, 86_400);
        assert_close(backoff(&c, 1, 1.0), 120.0);
        assert_close(backoff(&c, 1, -1.0), 80.0);
        assert_close(backoff(&c, 1, 7.0), 120.0);
        for _ in 0..1000 {
            let d = backoff(&c, 2, random_jitter()).as_secs_f64();
            assert!((160.0..=240.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn zeroth_attempt_counts_as_the_first() {
        let c = cfg(60, 3600, 86_400);
        assert_eq!(backoff(&c, 0, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn failure_before_expiry_retries_after_the_backoff() {
        let c = cfg(60, 3600, 86_400);
        assert_eq!(after_failure(&c, 0, 1_000, 1, 0.0), Next::RetryAt(61_000));
    }

    #[test]
    fn retry_that_would_pass_expiry_happens_at_expiry() {
        let c = cfg(60, 3600, 100);
        assert_eq!(after_failure(&c, 0, 90_000, 1, 0.0), Next::RetryAt(100_000));
    }

    #[test]
    fn failure_at_or_after_expiry_expires() {
        let c = cfg(60, 3600, 100);
        assert_eq!(after_failure(&c, 0, 100_000, 5, 0.0), Next::Expire);
        assert_eq!(after_failure(&c, 0, 999_999, 5, 0.0), Next::Expire);
    }
}
