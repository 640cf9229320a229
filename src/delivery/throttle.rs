//! Adaptive throttling (issue 6 §4): a provider's rate-limit replies (`421`, `4.7.x`) halve
//! that provider's hourly cap for the sending domain — and, for mail leaving from an IP of
//! a pool, for that source IP only (issue 17: a provider rates each IP on its own
//! reputation, so a 421 seen on IP A says nothing about IP B); each quiet period without
//! another one doubles it back, step by step, up to the configured cap. State is in memory:
//! a restart starts from the configured caps again (the provider says so again if it still
//! minds).

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

/// Whose hourly provider rate (limiter, `h/` counter, throttle, cluster GCRA): a sending
/// domain at a provider, and the source IP of a pool the mail leaves from (`None`: a stream
/// with one source IP or none, keyed as before pools existed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub domain: String,
    pub provider: String,
    pub ip: Option<String>,
}

impl RateKey {
    pub fn new(domain: &str, provider: &str, ip: Option<&str>) -> RateKey {
        RateKey {
            domain: domain.to_string(),
            provider: provider.to_string(),
            ip: ip.map(str::to_string),
        }
    }

    /// `h/<domain>/<provider>[/<ip>]/<hour>`: the persisted count of attempts admitted in
    /// clock hour `hour`. Without an IP the pre-pool key, so stored counters of streams with
    /// one source IP keep counting across the upgrade.
    pub fn hour_key(&self, hour: u64) -> String {
        match &self.ip {
            Some(ip) => format!("h/{}/{}/{ip}/{hour}", self.domain, self.provider),
            None => format!("h/{}/{}/{hour}", self.domain, self.provider),
        }
    }

    /// The cluster's GCRA cell name (before the cluster's prefix).
    pub fn cluster_key(&self) -> String {
        match &self.ip {
            Some(ip) => format!("warm:h:{}:{}:{ip}", self.domain, self.provider),
            None => format!("warm:h:{}:{}", self.domain, self.provider),
        }
    }

    /// "from <domain>[ via <ip>] to <provider>", for hold reasons and logs.
    pub fn describe(&self) -> String {
        match &self.ip {
            Some(ip) => format!("from {} via {ip} to {}", self.domain, self.provider),
            None => format!("from {} to {}", self.domain, self.provider),
        }
    }
}

/// Throttle levels per [`RateKey`].
#[derive(Debug, Default)]
pub struct Throttles {
    states: HashMap<RateKey, State>,
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
    pub fn level(&mut self, key: &RateKey, now_ms: u64, quiet_ms: u64) -> (u32, Option<Change>) {
        let Some(s) = self.states.get_mut(key) else {
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
            self.states.remove(key);
        }
        (to, Some(Change { from, to }))
    }

    /// When the next recovery step is due (`None` when not throttled).
    pub fn recovers_at(&self, key: &RateKey, quiet_ms: u64) -> Option<u64> {
        self.states
            .get(key)
            .filter(|s| s.level > 0)
            .map(|s| s.changed_ms + quiet_ms)
    }

    /// A rate-limit reply: one level slower (up to [`MAX_LEVEL`]).
    pub fn slow_down(&mut self, key: &RateKey, now_ms: u64) -> Change {
        let s = self.states.entry(key.clone()).or_default();
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
        let gmail = RateKey::new("d", "gmail", None);
        assert_eq!(t.slow_down(&gmail, 0), Change { from: 0, to: 1 });
        assert_eq!(t.slow_down(&gmail, 10), Change { from: 1, to: 2 });
        assert_eq!(scaled(500, 2), 125);
        assert_eq!(t.level(&gmail, 100, 1000), (2, None));
        let yahoo = RateKey::new("d", "yahoo", None);
        assert_eq!(t.level(&yahoo, 100, 1000), (0, None));
        assert_eq!(
            t.level(&gmail, 1010, 1000),
            (1, Some(Change { from: 2, to: 1 }))
        );
        assert_eq!(t.level(&gmail, 1500, 1000), (1, None));
        assert_eq!(
            t.level(&gmail, 2010, 1000),
            (0, Some(Change { from: 1, to: 0 }))
        );
        assert_eq!(scaled(3, 6), 1);
    }

    #[test]
    fn a_throttle_on_one_pool_ip_leaves_the_other_ips_and_the_unpooled_rate_alone() {
        let mut t = Throttles::default();
        let a = RateKey::new("d", "gmail", Some("192.0.2.1"));
        let b = RateKey::new("d", "gmail", Some("192.0.2.2"));
        let unpooled = RateKey::new("d", "gmail", None);
        t.slow_down(&a, 0);
        assert_eq!(t.level(&a, 1, 1000), (1, None));
        assert_eq!(t.level(&b, 1, 1000), (0, None));
        assert_eq!(t.level(&unpooled, 1, 1000), (0, None));
        assert_eq!(t.recovers_at(&b, 1000), None);
    }

    #[test]
    fn keys_without_an_ip_are_the_pre_pool_keys() {
        let k = RateKey::new("example.test", "gmail", None);
        assert_eq!(k.hour_key(7), "h/example.test/gmail/7");
        assert_eq!(k.cluster_key(), "warm:h:example.test:gmail");
        let k = RateKey::new("example.test", "gmail", Some("2001:db8::1"));
        assert_eq!(k.hour_key(7), "h/example.test/gmail/2001:db8::1/7");
        assert_eq!(k.cluster_key(), "warm:h:example.test:gmail:2001:db8::1");
    }
}
