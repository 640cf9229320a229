//! The source IP step of [`Warming::admit`] (issue 17 items 6 and 7): of the stream's
//! source IPs, in the order the recipient domain tries them ([`pools`](crate::delivery::pools)),
//! the first whose warming tier (`d/<ip>/<day>`) and daily cap at the recipient's provider
//! (`c/<ip>/<provider>/<day>`, `new_daily` while the IP is in warming, `warmed_daily`
//! after) have room; without a configured source, the IP the stream's mail last left from.
//!
//! Apart from `warming.rs` because it is the only step that may change the plan (the
//! chosen IP becomes its source). The counters are node-local even in a cluster: an IP
//! belongs to one host, and its keys name it.

use std::net::IpAddr;

use super::{DAY_MS, State, Warming};
use crate::delivery::plan::Plan;
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
}

impl IpSlot {
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.day_key).chain(self.provider_key.as_ref())
    }
}

impl Warming {
    /// The source IP this attempt counts against: the first of the plan's pool order
    /// (`streams.*_source_ip(s)`, [`pools`](crate::delivery::pools)) whose tier and daily cap at
    /// `provider` have room, made the plan's source; without a configured source, the IP
    /// mail of this stream last left from (a host without several outbound addresses always
    /// uses that one); the attempt's actual IP is counted in `settle`. Every IP spent: the
    /// first one's hold.
    pub(super) fn source_ip_slot(
        &self,
        st: &mut State,
        msg: &QueuedMessage,
        plan: &mut Plan,
        domain: &str,
        provider: &str,
        today: u64,
    ) -> Result<Option<IpSlot>, Hold> {
        let candidates: Vec<String> = if plan.sources.is_empty() {
            self.last_ip(st, msg.stream).into_iter().collect()
        } else {
            plan.sources.iter().map(IpAddr::to_string).collect()
        };
        let mut first_hold = None;
        for addr in &candidates {
            match self.ip_room(st, addr, provider, today) {
                Ok(slot) => {
                    if let Ok(ip) = addr.parse::<IpAddr>()
                        && !plan.sources.is_empty()
                        && plan.source != Some(ip)
                    {
                        plan.use_source(ip);
                    }
                    return Ok(Some(slot));
                }
                Err(h) => {
                    first_hold.get_or_insert(h);
                }
            }
        }
        match first_hold {
            None => Ok(None),
            Some(mut h) => {
                if candidates.len() > 1 {
                    h.reason.push_str(&format!(
                        " (all {} source IPs of the pool are at a cap)",
                        candidates.len()
                    ));
                }
                let why = if h.reason.starts_with("provider daily cap") {
                    "provider daily cap"
                } else {
                    "warming cap"
                };
                self.inner.metrics.warming_deferral(domain, why);
                Err(h)
            }
        }
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
        })
    }
}
