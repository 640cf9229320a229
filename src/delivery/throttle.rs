//! Adaptive throttling (issue 6 §4): a provider's rate-limit replies (`421`, `4.7.x`) halve
//! that provider's hourly cap for the sending domain; each quiet period without another one
//! doubles it back, step by step, up to the configured cap. State is in memory: a restart
//! starts from the configured caps again (the provider says so again if it still minds).

use std::collections::HashMap;

/// Deepest slowdown: the cap divided by 2^MAX_LEVEL.
pub const MAX_LEVEL: u32 = 6;

/// Is this deferral reason a provider asking us to slow down? A `421` reply or an
/// enhanced status `4.7.x` (RFC 3463 "security or policy status", which Gmail, Yahoo and
/// Microsoft use for rate limits).
pub fn is_rate_limit(reason: &str) -> bool {
    let code = crate::bounce::find_reply_code(reason);
    let status = crate::bounce::find_status(reason);
    code == Some(421) || status.is_some_and(|s| s.starts_with("4.7."))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    level: u32,
    /// When the level last changed (ms).
    changed_ms: u64,
}

/// Throttle levels per (sending domain, provider).
#[derive(Debug, Default)]
pub struct Throttles {
    states: HashMap<(String, String), State>,
}

/// A level change, for the log and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: u32,
    pub to: u32,
}

impl Throttles {
    /// The current level (cap divisor exponent) after applying recovery up to `now_ms`;
    /// `Some(change)` when it recovered a step.
    pub fn level(
        &mut self,
        domain: &str,
        provider: &str,
        now_ms: u64,
        quiet_ms: u64,
    ) -> (u32, Option<Change>) {
        let key = (domain.to_string(), provider.to_string());
        let Some(s) = self.states.get_mut(&key) else {
            return (0, None);
        };
        if s.level == 0 || now_ms.saturating_sub(s.changed_ms) < quiet_ms {
            return (s.level, None);
        }
        // One step per elapsed quiet period.
        let steps = (now_ms.saturating_sub(s.changed_ms) / quiet_ms.max(1)) as u32;
        let from = s.level;
        s.level = s.level.saturating_sub(steps.max(1));
        s.changed_ms = now_ms;
        let to = s.level;
        if to == 0 {
            self.states.remove(&key);
        }
        (to, Some(Change { from, to }))
    }

    /// When the next recovery step is due (`None` when not throttled).
    pub fn recovers_at(&self, domain: &str, provider: &str, quiet_ms: u64) -> Option<u64> {
        self.states
            .get(&(domain.to_string(), provider.to_string()))
            .filter(|s| s.level > 0)
            .map(|s| s.changed_ms + quiet_ms)
    }

    /// A rate-limit reply: one level slower (up to [`MAX_LEVEL`]).
    pub fn slow_down(&mut self, domain: &str, provider: &str, now_ms: u64) -> Change {
        let s = self
            .states
            .entry((domain.to_string(), provider.to_string()))
            .or_default();
        let from = s.level;
        s.level = (s.level + 1).min(MAX_LEVEL);
        s.changed_ms = now_ms;
        Change { from, to: s.level }
    }
}

/// `cap` at throttle `level`: halved per level, never below 1.
pub fn scaled(cap: u64, level: u32) -> u64 {
    (cap >> level.min(63)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_replies_are_recognised() {
        assert!(is_rate_limit(
            "421 4.7.0 Try again later, closing connection [smarthost a]"
        ));
        assert!(is_rate_limit(
            "450 4.7.28 Our system has detected an unusual rate"
        ));
        assert!(!is_rate_limit("451 4.3.0 Try again later"));
        assert!(!is_rate_limit("connection refused"));
    }

    #[test]
    fn halves_then_recovers_step_by_step() {
        let mut t = Throttles::default();
        assert_eq!(t.slow_down("d", "gmail", 0), Change { from: 0, to: 1 });
        assert_eq!(t.slow_down("d", "gmail", 10), Change { from: 1, to: 2 });
        assert_eq!(scaled(500, 2), 125);
        assert_eq!(t.level("d", "gmail", 100, 1000), (2, None));
        assert_eq!(t.level("d", "yahoo", 100, 1000), (0, None));
        assert_eq!(
            t.level("d", "gmail", 1010, 1000),
            (1, Some(Change { from: 2, to: 1 }))
        );
        assert_eq!(t.level("d", "gmail", 1500, 1000), (1, None));
        assert_eq!(
            t.level("d", "gmail", 2010, 1000),
            (0, Some(Change { from: 1, to: 0 }))
        );
        assert_eq!(scaled(3, 6), 1);
    }
}
