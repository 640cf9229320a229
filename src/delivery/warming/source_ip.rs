//! The source IP step of [`Warming::admit`] (issue 17 items 6 and 7): of the stream's
//! source IPs, in the order the recipient domain tries them ([`pools`](crate::delivery::pools)),
//! the first whose warming tier (`d/<ip>/<day>`), daily cap at the recipient's provider
//! (`c/<ip>/<provider>/<day>`, `new_daily` while the IP is in warming, `warmed_daily`
//! after) and — for a pool of several IPs — hourly rate at the provider (a [`RateKey`]
//! with the IP: a provider rates each IP on its own reputation) have room; without a
//! configured source, the IP the stream's mail last left from. The provider rate of a
//! stream with one source IP (or none) stays per (sending domain, provider), as before pools.
//!
//! Apart from `warming.rs` because it is the only step that may change the plan (the
//! chosen IP becomes its source). The day counters are node-local even in a cluster: an IP
//! belongs to one host, and its keys name it.

use std::net::IpAddr;

use super::{DAY_MS, State, Warming};
use crate::delivery::plan::Plan;
use crate::delivery::throttle::RateKey;
use crate::queue::{Hold, QueuedMessage};

/// The day counters of one source IP an admitted attempt reserved a slot in.
#[derive(Debug)]
pub(super) struct IpSlot {
    pub(super) ip: String,
    /// `d/<ip>/<day>`: the IP's warming tier.
    pub(super) day_key: String,
    /// `c/<ip>/<provider>/<day>`: the IP's daily cap at this provider, when it has one.
    pub(super) provider_key: Option<String>,
    /// That cap.
    pub(super) daily_cap: Option<u64>,
    /// Whether the IP is still in warming (a new sender to the provider's hourly rate).
    pub(super) new_ip: bool,
}

impl IpSlot {
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.day_key).chain(self.provider_key.as_ref())
    }
}

/// What the source IP step took: the IP's day slots, the provider rate it counted against
/// and that rate's full hourly cap (`None`: the provider has no rate).
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) ip: Option<IpSlot>,
    pub(super) rate: RateKey,
    pub(super) hourly: Option<u64>,
}

/// The recipient, its sending domain and provider, for the source IP step.
pub(super) struct Ask<'a> {
    pub(super) msg: &'a QueuedMessage,
    pub(super) domain: &'a str,
    pub(super) provider: &'a str,
    /// The sending domain is in warming (a new sender to the provider's hourly rate).
    pub(super) domain_new: bool,
    /// Pool IPs not to take (the cluster refused them this admission).
    pub(super) exclude: &'a [IpAddr],
}

impl Warming {
    /// The source IP this attempt counts against, and a cell of the provider's hourly rate:
    /// the first of the plan's pool order (`streams.*_source_ip(s)`,
    /// [`pools`](crate::delivery::pools)) whose tier, daily cap and (pool of several IPs)
    /// hourly rate at the provider have room, made the plan's source; without a configured
    /// source, the IP mail of this stream last left from (a host without several outbound
    /// addresses always uses that one); the attempt's actual IP is counted in `settle`.
    /// Every IP spent: the hold with the earliest retry time of them.
    pub(super) fn source_ip_slot(
        &self,
        st: &mut State,
        ask: &Ask<'_>,
        plan: &mut Plan,
        now: u64,
    ) -> Result<Slots, Hold> {
        let today = now / DAY_MS;
        let pooled = plan.sources.len() > 1;
        let candidates: Vec<String> = if plan.sources.is_empty() {
            self.last_ip(st, ask.msg.stream).into_iter().collect()
        } else {
            let skip = |ip: &&IpAddr| ask.exclude.contains(ip);
            plan.sources
                .iter()
                .filter(|ip| !skip(ip))
                .map(IpAddr::to_string)
                .collect()
        };
        let mut earliest: Option<Hold> = None;
        let mut keep = |h: Hold| {
            if earliest.as_ref().is_none_or(|e| h.retry_at < e.retry_at) {
                earliest = Some(h);
            }
        };
        for addr in &candidates {
            let slot = match self.ip_room(st, addr, ask.provider, today) {
                Ok(slot) => slot,
                Err(h) => {
                    keep(h);
                    continue;
                }
            };
            let rate = RateKey::new(ask.domain, ask.provider, pooled.then_some(addr.as_str()));
            // A pool IP's own rate is a new sender's while the IP or the domain is in warming:
            // the provider weighs both reputations.
            let new_sender = ask.domain_new || (pooled && slot.new_ip);
            match self.provider_rate(st, &rate, new_sender, now) {
                Ok(hourly) => {
                    if let Ok(ip) = addr.parse::<IpAddr>()
                        && !plan.sources.is_empty()
                        && plan.source != Some(ip)
                    {
                        plan.use_source(ip);
                    }
                    return Ok(Slots {
                        ip: Some(slot),
                        rate,
                        hourly,
                    });
                }
                Err(h) => keep(h),
            }
        }
        let Some(mut h) = earliest else {
            // No source IP known (first send of a stream without a configured source).
            let rate = RateKey::new(ask.domain, ask.provider, None);
            return match self.provider_rate(st, &rate, ask.domain_new, now) {
                Ok(hourly) => Ok(Slots {
                    ip: None,
                    rate,
                    hourly,
                }),
                Err(h) => {
                    self.inner
                        .metrics
                        .warming_deferral(ask.domain, "provider rate");
                    Err(h)
                }
            };
        };
        if candidates.len() > 1 {
            h.reason.push_str(&format!(
                " (all {} source IPs of the pool are at a cap)",
                candidates.len()
            ));
        }
        self.inner
            .metrics
            .warming_deferral(ask.domain, hold_kind(&h.reason));
        Err(h)
    }

    /// The slot `addr` would take: its tier's daily cap and its daily cap at `provider`
    /// (new or warmed by the IP's own tier) checked, nothing counted yet.
    fn ip_room(
        &self,
        st: &mut State,
        addr: &str,
        provider: &str,
        today: u64,
    ) -> Result<IpSlot, Hold> {
        let m = &self.inner.metrics;
        let (iday, icap) = self.tier(st, addr, today, true);
        let day_key = format!("d/{addr}/{today}");
        let isent = self.get(st, &day_key).unwrap_or(0);
        m.warming_ip(addr, iday, icap, isent);
        let next_day = (today + 1) * DAY_MS;
        if let Some(icap) = icap
            && isent >= icap
        {
            return Err(Hold {
                reason: format!(
                    "warming cap: source IP {addr} is on day {iday} of warming, {isent} of {icap} messages sent today; next window at the start of the next UTC day"
                ),
                retry_at: next_day,
            });
        }
        let daily = self.policy.rates.get(provider).and_then(|r| {
            if icap.is_some() {
                r.new_daily
            } else {
                r.warmed_daily
            }
        });
        let Some(daily) = daily else {
            return Ok(IpSlot {
                ip: addr.to_string(),
                day_key,
                provider_key: None,
                daily_cap: None,
                new_ip: icap.is_some(),
            });
        };
        let provider_key = format!("c/{addr}/{provider}/{today}");
        let psent = self.get(st, &provider_key).unwrap_or(0);
        m.provider_daily(addr, provider, daily, psent);
        if psent >= daily {
            return Err(Hold {
                reason: format!(
                    "provider daily cap: source IP {addr} sent {psent} of {daily} messages to {provider} today; next window at the start of the next UTC day"
                ),
                retry_at: next_day,
            });
        }
        Ok(IpSlot {
            ip: addr.to_string(),
            day_key,
            provider_key: Some(provider_key),
            daily_cap: Some(daily),
            new_ip: icap.is_some(),
        })
    }
}

/// The `reason` label of a hold, by the cap its reason names first.
fn hold_kind(reason: &str) -> &'static str {
    if reason.starts_with("provider rate") {
        "provider rate"
    } else if reason.starts_with("provider daily cap") {
        "provider daily cap"
    } else {
        "warming cap"
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::delivery::rate::HOUR_MS;
    use crate::envelope::{Destination, ListenerKind, QueueId, Stream};
    use crate::metrics::Metrics;
    use crate::queue::{Outcome, RcptState, Recipient};

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    /// Warming with gmail at `hourly` an hour (new or warmed) and no daily caps.
    fn warming(dir: &Path, hourly: u64) -> Warming {
        warming_with(dir, hourly, hourly, "")
    }

    /// Warming with gmail at `new` / `warmed` an hour and `start` (`warming.start` lines).
    fn warming_with(dir: &Path, new: u64, warmed: u64, start: &str) -> Warming {
        let toml = format!(
            "[warming]\nenabled = true\n[warming.start]\n{start}\n\
             [warming.providers.gmail]\nnew_hourly = {new}\nwarmed_hourly = {warmed}\n"
        );
        let config =
            Config::from_toml(&toml, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        Warming::open(dir, &config, Clock::system(), Metrics::new()).expect("open")
    }

    fn msg() -> QueuedMessage {
        QueuedMessage {
            id: QueueId::generate(),
            received_ms: 0,
            listener: ListenerKind::Submission,
            peer_ip: "127.0.0.1".parse().expect("ip"),
            helo: "app.internal".into(),
            mail_from: "app@example.test".into(),
            size: 0,
            recipients: vec![Recipient {
                address: "r@gmail.com".into(),
                dest: Destination::Relay,
                state: RcptState::Queued,
                attempts: 0,
                next_attempt_ms: 0,
                last_reply: None,
                category: None,
                updated_ms: 0,
                esmtp: Default::default(),
            }],
            stream: Stream::Transactional,
            esmtp: Default::default(),
        }
    }

    /// A plan to gmail from the pool `ips`, in that order.
    fn plan(ips: &[&str]) -> Plan {
        let sources: Vec<IpAddr> = ips.iter().map(|i| i.parse().expect("ip")).collect();
        Plan {
            hops: Vec::new(),
            source: sources.first().copied(),
            sources,
            provider: Some("gmail".into()),
        }
    }

    /// The source IP of each of `n` admissions (`None`: held, with its reason).
    fn admit_n(w: &Warming, ips: &[&str], n: usize) -> Vec<Result<String, String>> {
        (0..n)
            .map(|_| {
                let mut p = plan(ips);
                match w.admit(&msg(), &mut p, &[]) {
                    Ok(Some(_)) => Ok(p.source.map(|s| s.to_string()).unwrap_or_default()),
                    Ok(None) => Err("not warmed".into()),
                    Err(h) => Err(h.reason),
                }
            })
            .collect()
    }

    #[test]
    fn a_spent_hourly_rate_moves_to_the_pools_next_ip_then_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = warming(dir.path(), 2);
        let got = admit_n(&w, &[A, B], 5);
        assert_eq!(
            got[..4],
            [Ok(A.into()), Ok(A.into()), Ok(B.into()), Ok(B.into())]
        );
        let held = got[4].clone().expect_err("the fifth is held");
        assert!(held.starts_with("provider rate"), "{held}");
        assert!(held.contains(&format!("via {A}")), "{held}");
        assert!(held.contains("all 2 source IPs"), "{held}");
    }

    #[test]
    fn a_stream_with_one_ip_keeps_the_per_domain_rate_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = warming(dir.path(), 2);
        let got = admit_n(&w, &[A], 3);
        assert_eq!(got[..2], [Ok(A.into()), Ok(A.into())]);
        let held = got[2].clone().expect_err("the third is held");
        assert!(held.contains("from example.test to gmail"), "{held}");
        let hour = Clock::system().now_ms() / HOUR_MS;
        let mut st = w.inner.state.lock().expect("lock");
        assert_eq!(
            w.get(&mut st, &format!("h/example.test/gmail/{hour}")),
            Some(2)
        );
        let per_ip = format!("h/example.test/gmail/{A}/{hour}");
        assert_eq!(w.get(&mut st, &per_ip), None);
    }

    #[test]
    fn a_throttle_on_one_pool_ip_halves_only_that_ips_rate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = warming(dir.path(), 4);
        let mut p = plan(&[A, B]);
        let ticket = w
            .admit(&msg(), &mut p, &[])
            .expect("admitted")
            .expect("ticket");
        let deferred = Outcome::Deferred {
            reason: "421 4.7.0 Try again later".into(),
        };
        w.settle(ticket, &deferred, Some(A.parse().expect("ip")));
        // A: cap 4 halved to 2, one cell in use → one more; B keeps its 4.
        let got = admit_n(&w, &[A, B], 6);
        let from = |ip: &str| got.iter().filter(|r| r.as_deref() == Ok(ip)).count();
        assert_eq!((from(A), from(B)), (1, 4), "{got:?}");
        assert!(got[5].is_err(), "{got:?}");
    }

    #[test]
    fn a_pool_ips_rate_is_a_new_senders_while_the_ip_or_the_domain_is_in_warming() {
        // gmail: 1 an hour new, 3 warmed; day 21+ of the default schedule is warmed.
        let long_ago = "\"2020-01-01\"";
        let cases = [
            // Warmed IPs, a new domain: the domain's reputation is still new.
            (format!("\"{A}\" = {long_ago}\n\"{B}\" = {long_ago}"), 2),
            // A warmed domain on new IPs.
            (format!("\"example.test\" = {long_ago}"), 2),
            // Both warmed.
            (
                format!(
                    "\"example.test\" = {long_ago}\n\"{A}\" = {long_ago}\n\"{B}\" = {long_ago}"
                ),
                6,
            ),
        ];
        for (start, sent) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let w = warming_with(dir.path(), 1, 3, &start);
            let got = admit_n(&w, &[A, B], 7);
            assert_eq!(
                got.iter().filter(|r| r.is_ok()).count(),
                sent,
                "{start}: {got:?}"
            );
        }
    }
}
