//! Warming tiers and provider rates (issue 6 §1–4, §8): before a relayed recipient's
//! attempt, once its plan has placed the recipient's provider, [`Warming::admit`] checks
//! the sending domain's daily cap (by its day in warming) and the provider's hourly rate
//! (new or warmed sender, slowed by the [`throttle`](super::throttle)). Over a cap,
//! nothing is dropped: the recipient is held ([`Hold`], `deferred` with reason `warming
//! cap` / `provider rate`, no attempt counted) until its window opens. After the attempt,
//! [`Warming::settle`] gives back the daily slot of a deferred attempt and slows the
//! provider down on a rate-limit reply.
//!
//! Daily caps are day counters: the next window is the next UTC day. Provider rates are
//! `governor` GCRA limiters ([`rate`](super::rate)) per (sending domain, provider) — and per
//! source IP for mail leaving from an IP of a pool ([`RateKey`]),
//! `Quota::per_hour(cap)`: a burst of the cap, then one message per `1 h / cap`; a held
//! recipient retries when governor says the next cell is free (or the throttle's next
//! recovery step, if sooner), so held mail is paced through the hour rather than sent in a
//! burst at its top. A new cap (throttle level, end of warming) replaces the limiter with
//! one of the new quota, seeded with the cells still in use. An attempt that was deferred
//! (4xx) keeps its cell: the provider saw it, and counting it is the cautious reading of a
//! provider's rate, above all of the `421`s that throttling answers.
//!
//! Storage: the `warming` family of the one RocksDB: `f/<domain>` → first day (UTC day
//! number), `d/<domain>/<day>` → messages that day, `h/<domain>/<provider>/<hour>` (pool IPs:
//! `h/<domain>/<provider>/<ip>/<hour>`) → attempts admitted that clock hour; so a restart neither resets the day in warming nor its
//! count. governor's state is in memory only: after a restart a provider's limiter is seeded
//! on first use from the `h/` counters of the last 60 minutes ([`rate::recent_use`]), so a
//! restart grants no fresh burst. Values are little-endian u64. Counters are cached in
//! memory; every change is written through.
//!
//! Split: this file is the admit/settle policy (daily caps of the sending domain and the
//! source IP, tickets); [`provider_rate`] is the hourly provider step with its governor
//! limiters; [`source_ip`] picks the source IP of a pool with room in its tier, provider
//! daily cap and (per IP) provider hourly rate; [`store`] holds the counters and last-IP records (RocksDB, cached, written
//! through) and the `warming.start` date parsing.

mod policy;
mod provider_rate;
mod shared;
mod source_ip;
mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::plan::Plan;
use super::rate::{HOUR_MS, ProviderLimiter};
use super::throttle::{self, RateKey, Throttles};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Column, Db, DbError, Family};
use crate::envelope::Stream;
use crate::metrics::Metrics;
use crate::providers::ProviderTable;
use crate::queue::{Hold, Outcome, QueuedMessage};
use policy::Policy;
use source_ip::{Ask, IpSlot, Slots};

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum WarmingError {
    #[error("warming store: {0}")]
    Db(#[from] DbError),
}

/// Handle on the warming counters and limiters, with the `[warming]` policy it was built
/// for; cheap to clone. A reload makes a new handle on the same counters
/// ([`Warming::reconfigured`]): a new schedule or provider table never resets a domain's
/// day in warming, today's count or the provider limiters.
#[derive(Clone)]
pub struct Warming {
    inner: Arc<Inner>,
    policy: Arc<Policy>,
}

/// What lives as long as the server: the store and the counters.
struct Inner {
    /// The `warming` family; closed at shutdown (then everything is admitted).
    col: Column,
    clock: Clock,
    metrics: Metrics,
    state: Mutex<State>,
    /// Connection limits per (provider, its `connections`): a reload that changes the
    /// number starts a new semaphore rather than resizing one in use.
    limits: Mutex<HashMap<(String, usize), Arc<Semaphore>>>,
    /// The cluster the caps are shared with (issue 18), set once at start.
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
}

#[derive(Default)]
struct State {
    counters: HashMap<String, u64>,
    throttles: Throttles,
    /// Provider rate limiters per (sending domain, provider[, pool source IP]).
    limiters: HashMap<RateKey, ProviderLimiter>,
    /// Per stream, the source IP relayed mail of that stream last left from (loaded from
    /// `l/ip` (transactional) / `l/ip/mass` on first use).
    last_ip: HashMap<Stream, Option<String>>,
    /// The hour stale counters were last pruned in ([`Warming::prune`]).
    pruned_hour: Option<u64>,
}

/// A slot taken by [`Warming::admit`]; hand it to [`Warming::settle`].
#[derive(Debug)]
pub struct Ticket {
    domain: String,
    day_key: String,
    provider: String,
    /// The hourly rate the attempt took a cell of (per source IP for a pool's IPs).
    rate: RateKey,
    /// Whether the provider has a rate (and so a throttle).
    rated: bool,
    /// The slots reserved for the source IP this attempt leaves from.
    ip: Option<IpSlot>,
    stream: Stream,
    /// The sending domain's full daily cap, and (rated providers) the full hourly cap:
    /// what the cluster's shared counters are checked against.
    cap: Option<u64>,
    hourly: Option<u64>,
    /// Counted while the cluster's Redis was down: the day slot is replayed to it later.
    pending: bool,
}

impl Warming {
    /// The counters in the `warming` family of the server's database, with `config`'s
    /// policy. Made whether or not `[warming] enabled` is on, so that a reload can turn
    /// warming on; the server only hands the handle to delivery while it is on.
    pub fn in_db(db: &Db, config: &Config, clock: Clock, metrics: Metrics) -> Warming {
        Warming::with_column(Column::new(db, Family::Warming), config, clock, metrics)
    }

    /// As [`Warming::in_db`], alone in a database of its own in `dir` (tests).
    pub fn open(
        dir: &Path,
        config: &Config,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Warming, WarmingError> {
        let col = Column::standalone(dir, Family::Warming)?;
        Ok(Warming::with_column(col, config, clock, metrics))
    }

    fn with_column(col: Column, config: &Config, clock: Clock, metrics: Metrics) -> Warming {
        Warming {
            inner: Arc::new(Inner {
                col,
                clock,
                metrics,
                state: Mutex::new(State::default()),
                limits: Mutex::new(HashMap::new()),
                cluster: std::sync::OnceLock::new(),
            }),
            policy: Arc::new(Policy::new(config)),
        }
    }

    /// The same counters under `config`'s policy (a reload).
    pub fn reconfigured(&self, config: &Config) -> Warming {
        Warming {
            inner: self.inner.clone(),
            policy: Arc::new(Policy::new(config)),
        }
    }

    /// Closes the store (graceful shutdown); later calls admit everything.
    pub fn close(&self) {
        self.inner.col.close();
    }

    /// The sending domain warming applies to: mail with a sender (not DSNs, not
    /// SRS-forwarded copies, whose sender is an SRS address of the bounce domain). Only the
    /// relay lane asks, and only for relayed recipients.
    fn sending_domain(&self, msg: &QueuedMessage) -> Option<String> {
        let (local, d) = msg.mail_from.rsplit_once('@')?;
        let d = d.to_ascii_lowercase();
        let local = local.to_ascii_lowercase();
        let srs = local.starts_with("srs0=") || local.starts_with("srs1=");
        let forwarded = srs && d == self.policy.bounce_domain;
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
        let start = match self.policy.start.get(domain) {
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
            .policy
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

    /// The provider table the plan places recipients with (config table, then built-in).
    pub fn providers(&self) -> &ProviderTable {
        &self.policy.providers
    }

    /// Takes a slot for this attempt, or the hold that waits for the next window.
    /// `Ok(None)`: warming does not apply to this recipient.
    /// `plan`: the attempt's plan, made with [`Warming::providers`] (its provider and the
    /// stream's source IP are what is counted); with a pool of source IPs, the first of
    /// its order with room in its tier, provider daily cap and provider hourly rate becomes
    /// the plan's source. `exclude`: pool IPs not to take (refused by the cluster).
    pub fn admit(
        &self,
        msg: &QueuedMessage,
        plan: &mut Plan,
        exclude: &[IpAddr],
    ) -> Result<Option<Ticket>, Hold> {
        let Some(domain) = self.sending_domain(msg) else {
            return Ok(None);
        };
        let provider = plan.provider.clone().unwrap_or_else(|| "other".to_string());
        let now = self.inner.clock.now_ms();
        let today = now / DAY_MS;
        let m = &self.inner.metrics;
        let Ok(mut st) = self.inner.state.lock() else {
            return Ok(None);
        };
        if self.inner.col.is_closed() {
            return Ok(None);
        }
        if st.pruned_hour != Some(now / HOUR_MS) {
            st.pruned_hour = Some(now / HOUR_MS);
            self.prune(&mut st, now);
        }
        let (day, full_cap) = self.tier(&mut st, &domain, today, true);
        // A cluster node without Redis: its share of the cap (cap / cluster.nodes).
        let share = self.share_divisor();
        let cap = full_cap.map(|c| c / share);
        let day_key = format!("d/{domain}/{today}");
        let sent = self.get(&mut st, &day_key).unwrap_or(0);
        m.warming_day(&domain, day, cap, sent);
        if let Some(cap) = cap
            && sent >= cap
        {
            m.warming_deferral(&domain, "warming cap");
            return Err(Hold {
                reason: format!(
                    "warming cap: {domain} is on day {day} of warming, {sent} of {cap} messages sent today; next window at the start of the next UTC day"
                ),
                retry_at: (today + 1) * DAY_MS,
            });
        }
        let ask = Ask {
            msg,
            domain: &domain,
            provider: &provider,
            domain_new: cap.is_some(),
            exclude,
        };
        let Slots { ip, rate, hourly } = self.source_ip_slot(&mut st, &ask, plan, now)?;
        let rated = hourly.is_some();
        self.put(&mut st, &day_key, sent + 1);
        m.warming_day(&domain, day, cap, sent + 1);
        for key in ip.iter().flat_map(IpSlot::keys) {
            let n = self.get(&mut st, key).unwrap_or(0);
            self.put(&mut st, key, n + 1);
        }
        if let Some(IpSlot {
            ip,
            provider_key: Some(key),
            daily_cap: Some(cap),
            ..
        }) = &ip
        {
            let n = self.get(&mut st, key).unwrap_or(0);
            m.provider_daily(ip, &provider, *cap, n);
        }
        Ok(Some(Ticket {
            domain,
            day_key,
            provider,
            rate,
            rated,
            ip,
            stream: msg.stream,
            cap: full_cap,
            hourly,
            pending: share > 1,
        }))
    }

    /// After the attempt: a deferred one gives its daily slots back (it did not count as a
    /// send) but keeps its provider rate cell (governor cannot give one back, and the
    /// provider saw the attempt); a rate-limit reply slows the provider down for this
    /// sending domain. `sending_ip`: the local address the message left from, counted in
    /// that IP's tier.
    pub fn settle(&self, ticket: Ticket, outcome: &Outcome, sending_ip: Option<IpAddr>) {
        let now = self.inner.clock.now_ms();
        let Ok(mut st) = self.inner.state.lock() else {
            return;
        };
        let Outcome::Deferred { reason, .. } = outcome else {
            if let Some(addr) = sending_ip.map(|a| a.to_string())
                && ticket.ip.as_ref().is_none_or(|slot| slot.ip != addr)
            {
                // Another IP than expected (or the first send): move the counts to it.
                for key in ticket.ip.iter().flat_map(IpSlot::keys) {
                    let n = self.get(&mut st, key).unwrap_or(0);
                    self.put(&mut st, key, n.saturating_sub(1));
                }
                let today = now / DAY_MS;
                let (day, cap) = self.tier(&mut st, &addr, today, true);
                let key = format!("d/{addr}/{today}");
                let n = self.get(&mut st, &key).unwrap_or(0) + 1;
                self.put(&mut st, &key, n);
                self.inner.metrics.warming_ip(&addr, day, cap, n);
                if ticket.ip.as_ref().is_some_and(|s| s.provider_key.is_some()) {
                    let key = format!("c/{addr}/{}/{today}", ticket.provider);
                    let n = self.get(&mut st, &key).unwrap_or(0);
                    self.put(&mut st, &key, n + 1);
                }
                self.set_last_ip(&mut st, ticket.stream, &addr);
            }
            return;
        };
        self.give_back_shared(&ticket);
        let reserved_ip = ticket.ip.iter().flat_map(IpSlot::keys);
        for key in std::iter::once(&ticket.day_key).chain(reserved_ip) {
            let n = self.get(&mut st, key).unwrap_or(0);
            self.put(&mut st, key, n.saturating_sub(1));
        }
        if ticket.rated && throttle::is_rate_limit(reason) {
            // A pool IP's rate: the IP the provider saw (a failed bind may have moved the
            // attempt to the pool's next IP) is the one slowed down.
            let mut key = ticket.rate;
            if key.ip.is_some()
                && let Some(addr) = sending_ip
            {
                key.ip = Some(addr.to_string());
            }
            let c = st.throttles.slow_down(&key, now);
            let ip = key.ip.as_deref();
            tracing::warn!(
                sending_domain = %key.domain, provider = %key.provider,
                sending_ip = ip.unwrap_or(""), from = c.from, to = c.to, reason = %reason,
                "provider rate-limited us: hourly cap halved"
            );
            let m = &self.inner.metrics;
            m.throttle_event(&key.domain, &key.provider, ip);
            m.provider_throttle_level(&key.domain, &key.provider, ip, c.to);
        }
    }
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
}
