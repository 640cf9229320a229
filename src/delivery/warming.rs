//! Warming tiers and provider rates (issue 6 §1–4, §8): before a relayed recipient's
//! attempt, [`Warming::admit`] checks the sending domain's daily cap (by its day in warming)
//! and the recipient provider's hourly cap (new or warmed sender, slowed by the
//! [`throttle`](super::throttle)). Over a cap, nothing is dropped: the recipient is deferred
//! (`warming cap` / `provider rate`) until the next UTC day / hour opens. After the attempt,
//! [`Warming::settle`] gives back the slot of a deferred attempt and slows the provider down
//! on a rate-limit reply.
//!
//! Storage: its own RocksDB (`<data_dir>/warming`): `f/<domain>` → first day (UTC day
//! number), `d/<domain>/<day>` → messages that day, `h/<domain>/<provider>/<hour>` →
//! messages that hour; so a restart neither resets the day in warming nor its count. Values
//! are little-endian u64. Counters are cached in memory; every change is written through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rocksdb::{DB, Options};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Outcome;
use super::relay::Relay;
use super::throttle::{self, Throttles};
use crate::clock::Clock;
use crate::config::{Config, ProviderRate, WarmingStep, parse_day_range};
use crate::metrics::Metrics;
use crate::queue::{QueuedMessage, Recipient};
use crate::routing::Destination;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum WarmingError {
    #[error("warming store: {0}")]
    Rocks(#[from] rocksdb::Error),
}

/// ((first day, last day or open-ended), daily cap or full quota).
type Step = ((u32, Option<u32>), Option<u64>);

/// Handle; cheap to clone.
#[derive(Clone)]
pub struct Warming {
    inner: Arc<Inner>,
}

struct Inner {
    db: Mutex<Option<DB>>,
    steps: Vec<Step>,
    rates: std::collections::BTreeMap<String, ProviderRate>,
    /// Configured start day per domain.
    start: HashMap<String, u64>,
    quiet_ms: u64,
    bounce_domain: String,
    clock: Clock,
    metrics: Metrics,
    state: Mutex<State>,
    /// Connection limits per provider (`connections`).
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

#[derive(Default)]
struct State {
    counters: HashMap<String, u64>,
    throttles: Throttles,
    /// The source IP relayed mail last left from (loaded from `l/ip` on first use).
    last_ip: Option<Option<String>>,
}

/// A slot taken by [`Warming::admit`]; hand it to [`Warming::settle`].
#[derive(Debug)]
pub struct Ticket {
    domain: String,
    day_key: String,
    provider: String,
    hour_key: Option<String>,
    /// (source IP, its day counter key) reserved for the IP mail last left from.
    ip: Option<(String, String)>,
}

impl Warming {
    /// Opens (creating) the store; `None` when `[warming] enabled` is off.
    pub fn open(
        dir: &Path,
        config: &Config,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Option<Warming>, WarmingError> {
        let w = &config.warming;
        if !w.enabled {
            return Ok(None);
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, dir)?;
        let steps = w
            .steps()
            .iter()
            .filter_map(|s: &WarmingStep| parse_day_range(&s.days).map(|r| (r, s.daily_cap)))
            .collect();
        let start = w
            .start
            .iter()
            .filter_map(|(d, date)| parse_date(date).map(|day| (d.to_ascii_lowercase(), day)))
            .collect();
        Ok(Some(Warming {
            inner: Arc::new(Inner {
                db: Mutex::new(Some(db)),
                steps,
                rates: w.provider_rates(),
                start,
                quiet_ms: w.throttle_quiet.get().as_millis() as u64,
                bounce_domain: config.bounce_domain().to_ascii_lowercase(),
                clock,
                metrics,
                state: Mutex::new(State::default()),
                limits: Mutex::new(HashMap::new()),
            }),
        }))
    }

    /// Closes the store (graceful shutdown); later calls admit everything.
    pub fn close(&self) {
        if let Ok(mut db) = self.inner.db.lock() {
            db.take();
        }
    }

    /// The sending domain warming applies to: relayed mail with a sender (not DSNs, not
    /// SRS-forwarded copies, whose sender is an SRS address of the bounce domain).
    fn sending_domain(&self, msg: &QueuedMessage, rcpt: &Recipient) -> Option<String> {
        if rcpt.dest != Destination::Relay {
            return None;
        }
        let (local, d) = msg.mail_from.rsplit_once('@')?;
        let d = d.to_ascii_lowercase();
        let local = local.to_ascii_lowercase();
        let srs = local.starts_with("srs0=") || local.starts_with("srs1=");
        let forwarded = srs && d == self.inner.bounce_domain;
        (!d.is_empty() && !forwarded).then_some(d)
    }

    /// Day in warming (1-based) of `domain` today, and its daily cap (`None` = full quota).
    fn tier(
        &self,
        st: &mut State,
        domain: &str,
        today: u64,
        record_first: bool,
    ) -> (u64, Option<u64>) {
        let start = match self.inner.start.get(domain) {
            Some(d) => Some(*d),
            None => {
                let key = format!("f/{domain}");
                match self.get(st, &key) {
                    Some(d) => Some(d),
                    None if record_first => {
                        self.put(st, &key, today);
                        Some(today)
                    }
                    None => None,
                }
            }
        };
        let day = start.map_or(1, |s| today.saturating_sub(s) + 1);
        let cap = self
            .inner
            .steps
            .iter()
            .find(|((from, to), _)| {
                day >= u64::from(*from) && to.is_none_or(|t| day <= u64::from(t))
            })
            .and_then(|(_, cap)| *cap);
        (day, cap)
    }

    /// Whether `domain`'s daily cap is spent (tempfail mode at submission).
    pub fn day_spent(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        let today = self.inner.clock.now_ms() / DAY_MS;
        let Ok(mut st) = self.inner.state.lock() else {
            return false;
        };
        let (_, cap) = self.tier(&mut st, &domain, today, false);
        let sent = self
            .get(&mut st, &format!("d/{domain}/{today}"))
            .unwrap_or(0);
        cap.is_some_and(|c| sent >= c)
    }

    /// Takes a slot for this attempt, or the deferral that waits for the next window.
    /// `Ok(None)`: warming does not apply to this recipient.
    pub async fn admit(
        &self,
        msg: &QueuedMessage,
        rcpt: &Recipient,
        relay: Option<&Relay>,
    ) -> Result<Option<Ticket>, Outcome> {
        let Some(domain) = self.sending_domain(msg, rcpt) else {
            return Ok(None);
        };
        let provider = match relay {
            Some(r) => r.provider(&rcpt.address).await,
            None => crate::bounce::detect_provider(Some(&rcpt.address), &[], ""),
        }
        .as_label()
        .to_string();
        let now = self.inner.clock.now_ms();
        let (today, hour) = (now / DAY_MS, now / HOUR_MS);
        let m = &self.inner.metrics;
        let Ok(mut st) = self.inner.state.lock() else {
            return Ok(None);
        };
        if self.inner.db.lock().map(|d| d.is_none()).unwrap_or(true) {
            return Ok(None);
        }
        let (day, cap) = self.tier(&mut st, &domain, today, true);
        let day_key = format!("d/{domain}/{today}");
        let sent = self.get(&mut st, &day_key).unwrap_or(0);
        m.warming_day(&domain, day, cap, sent);
        if let Some(cap) = cap
            && sent >= cap
        {
            m.warming_deferral(&domain, "warming cap");
            return Err(Outcome::Deferred {
                reason: format!(
                    "warming cap: {domain} is on day {day} of warming, {sent} of {cap} messages sent today; next window at the start of the next UTC day"
                ),
                retry_at: Some((today + 1) * DAY_MS),
            });
        }
        // The source IP's own tier: checked against the IP mail last left from (a host
        // without several outbound addresses always uses that one); the attempt's actual
        // IP is counted in `settle`.
        let mut ip = None;
        if let Some(addr) = self.last_ip(&mut st) {
            let (iday, icap) = self.tier(&mut st, &addr, today, true);
            let key = format!("d/{addr}/{today}");
            let isent = self.get(&mut st, &key).unwrap_or(0);
            m.warming_ip(&addr, iday, icap, isent);
            if let Some(icap) = icap
                && isent >= icap
            {
                m.warming_deferral(&domain, "warming cap");
                return Err(Outcome::Deferred {
                    reason: format!(
                        "warming cap: source IP {addr} is on day {iday} of warming, {isent} of {icap} messages sent today; next window at the start of the next UTC day"
                    ),
                    retry_at: Some((today + 1) * DAY_MS),
                });
            }
            ip = Some((addr, key));
        }
        let mut hour_key = None;
        if let Some(rate) = self.inner.rates.get(&provider) {
            let base = if cap.is_some() {
                rate.new_hourly
            } else {
                rate.warmed_hourly
            };
            let (level, change) = st
                .throttles
                .level(&domain, &provider, now, self.inner.quiet_ms);
            if let Some(c) = change {
                tracing::info!(
                    sending_domain = %domain, provider = %provider, from = c.from, to = c.to,
                    hourly_cap = throttle::scaled(base, c.to),
                    "provider throttle recovers a step after a quiet period"
                );
            }
            let hcap = throttle::scaled(base, level);
            let key = format!("h/{domain}/{provider}/{hour}");
            let used = self.get(&mut st, &key).unwrap_or(0);
            m.provider_rate(&domain, &provider, hcap, used, level);
            if used >= hcap {
                m.warming_deferral(&domain, "provider rate");
                // The next hour, or the throttle's next recovery step if sooner.
                let next_hour = (hour + 1) * HOUR_MS;
                let retry_at = st
                    .throttles
                    .recovers_at(&domain, &provider, self.inner.quiet_ms)
                    .map_or(next_hour, |t| t.min(next_hour));
                return Err(Outcome::Deferred {
                    reason: format!(
                        "provider rate: {used} of {hcap} messages this hour from {domain} to {provider}; next window at the start of the next hour"
                    ),
                    retry_at: Some(retry_at),
                });
            }
            self.put(&mut st, &key, used + 1);
            m.provider_rate(&domain, &provider, hcap, used + 1, level);
            hour_key = Some(key);
        }
        self.put(&mut st, &day_key, sent + 1);
        m.warming_day(&domain, day, cap, sent + 1);
        if let Some((_, key)) = &ip {
            let n = self.get(&mut st, key).unwrap_or(0);
            self.put(&mut st, key, n + 1);
        }
        Ok(Some(Ticket {
            domain,
            day_key,
            provider,
            hour_key,
            ip,
        }))
    }

    /// After the attempt: a deferred one gives its slots back (it did not count as a send);
    /// a rate-limit reply slows the provider down for this sending domain. `sending_ip`:
    /// the local address the message left from, counted in that IP's tier.
    pub fn settle(&self, ticket: Ticket, outcome: &Outcome, sending_ip: Option<IpAddr>) {
        let now = self.inner.clock.now_ms();
        let Ok(mut st) = self.inner.state.lock() else {
            return;
        };
        let Outcome::Deferred { reason, .. } = outcome else {
            if let Some(addr) = sending_ip.map(|a| a.to_string())
                && ticket
                    .ip
                    .as_ref()
                    .is_none_or(|(reserved, _)| *reserved != addr)
            {
                // Another IP than expected (or the first send): move the count to it.
                if let Some((_, key)) = &ticket.ip {
                    let n = self.get(&mut st, key).unwrap_or(0);
                    self.put(&mut st, key, n.saturating_sub(1));
                }
                let today = now / DAY_MS;
                let (day, cap) = self.tier(&mut st, &addr, today, true);
                let key = format!("d/{addr}/{today}");
                let n = self.get(&mut st, &key).unwrap_or(0) + 1;
                self.put(&mut st, &key, n);
                self.inner.metrics.warming_ip(&addr, day, cap, n);
                self.set_last_ip(&mut st, &addr);
            }
            return;
        };
        let reserved_ip = ticket.ip.as_ref().map(|(_, k)| k);
        for key in std::iter::once(&ticket.day_key)
            .chain(ticket.hour_key.as_ref())
            .chain(reserved_ip)
        {
            let n = self.get(&mut st, key).unwrap_or(0);
            self.put(&mut st, key, n.saturating_sub(1));
        }
        if ticket.hour_key.is_some() && throttle::is_rate_limit(reason) {
            let c = st
                .throttles
                .slow_down(&ticket.domain, &ticket.provider, now);
            tracing::warn!(
                sending_domain = %ticket.domain, provider = %ticket.provider,
                from = c.from, to = c.to, reason = %reason,
                "provider rate-limited us: hourly cap halved"
            );
            let m = &self.inner.metrics;
            m.throttle_event(&ticket.domain, &ticket.provider);
            m.provider_throttle_level(&ticket.domain, &ticket.provider, c.to);
        }
    }

    /// Waits for one of the provider's `connections` (held for the attempt); `None` when
    /// the provider has no limit.
    pub async fn connection(&self, ticket: &Ticket) -> Option<OwnedSemaphorePermit> {
        let n = self.inner.rates.get(&ticket.provider)?.connections?;
        let sem = self
            .inner
            .limits
            .lock()
            .ok()?
            .entry(ticket.provider.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(n.max(1))))
            .clone();
        sem.acquire_owned().await.ok()
    }

    fn last_ip(&self, st: &mut State) -> Option<String> {
        if let Some(ip) = &st.last_ip {
            return ip.clone();
        }
        let stored = self.inner.db.lock().ok().and_then(|db| {
            let v = db.as_ref()?.get(b"l/ip").ok()??;
            String::from_utf8(v).ok()
        });
        st.last_ip = Some(stored.clone());
        stored
    }

    fn set_last_ip(&self, st: &mut State, ip: &str) {
        st.last_ip = Some(Some(ip.to_string()));
        if let Ok(db) = self.inner.db.lock()
            && let Some(db) = db.as_ref()
            && let Err(e) = db.put(b"l/ip", ip.as_bytes())
        {
            tracing::warn!(error = %e, "cannot store the last source IP");
        }
    }

    fn get(&self, st: &mut State, key: &str) -> Option<u64> {
        if let Some(v) = st.counters.get(key) {
            return Some(*v);
        }
        let db = self.inner.db.lock().ok()?;
        let v = db.as_ref()?.get(key.as_bytes()).ok()??;
        let v = u64::from_le_bytes(v.as_slice().try_into().ok()?);
        st.counters.insert(key.to_string(), v);
        Some(v)
    }

    fn put(&self, st: &mut State, key: &str, v: u64) {
        st.counters.insert(key.to_string(), v);
        if let Ok(db) = self.inner.db.lock()
            && let Some(db) = db.as_ref()
            && let Err(e) = db.put(key.as_bytes(), v.to_le_bytes())
        {
            tracing::warn!(error = %e, key, "cannot store a warming counter");
        }
    }
}

/// `"2026-11-01"` → days since 1970-01-01 (UTC).
pub fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let mdays = [
        31,
        28 + u32::from(is_leap(y)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > mdays[m as usize - 1]
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_start_dates_providers_and_defaults() {
        let bad = r#"
[warming]
enabled = true
start = { "example.test" = "2026-13-01" }
[warming.providers.hotmial]
new_hourly = 1
warmed_hourly = 2
[warming.providers.gmail]
new_hourly = 0
warmed_hourly = 2
"#;
        let e = match Config::from_toml(bad, Path::new("t.toml")) {
            Ok(_) => panic!("accepted an invalid [warming]"),
            Err(e) => e.to_string(),
        };
        for want in [
            "warming.start.example.test",
            "warming.providers.hotmial",
            "warming.providers.gmail",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        let ok = Config::from_toml(
            "[warming.providers.gmail]\nnew_hourly = 7\nwarmed_hourly = 70\n",
            Path::new("t.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rates = ok.warming.provider_rates();
        assert_eq!(rates["gmail"].new_hourly, 7);
        assert_eq!(rates["yahoo"].warmed_hourly, 10_000);
        assert_eq!(rates["microsoft"].new_hourly, 500);
        let steps = ok.warming.steps();
        assert_eq!(steps.len(), 6);
        assert_eq!(
            (steps[0].days.as_str(), steps[0].daily_cap),
            ("1-3", Some(1000))
        );
        assert_eq!((steps[5].days.as_str(), steps[5].daily_cap), ("21+", None));
        assert!(!ok.warming.enabled);
    }

    #[test]
    fn dates_are_utc_day_numbers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2026-11-23"), Some(20_780));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("yesterday"), None);
    }
}
