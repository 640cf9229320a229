//! Per-client rates (issue 16 item 3): connections, messages and recipients a minute per
//! client IP and per client network (`[rates]`), and messages an hour per submission login
//! (`[[submission.users]] max_messages_per_hour`). governor GCRA limiters on the crate
//! [`Clock`], keyed by address, network or login.
//!
//! Counted on the inbound listener for every client outside `relay.trusted_networks`;
//! logins are counted on the submission listeners. State is in memory and belongs to one
//! config: a restart or a reload starts every window afresh (the limits are for floods,
//! which outlast both).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::clock::Clock;
use crate::config::{Config, RateLimits};
use crate::delivery::rate::GovClock;

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, GovClock, NoOpMiddleware<Nanos>>;

/// Checks between two sweeps of idle keys (bounds the maps under an address spray).
const SWEEP_EVERY: u64 = 4096;
/// A login over its cap raises one event an hour, not one per refused MAIL.
const EVENT_EVERY_NS: u64 = 3_600_000_000_000;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Connection,
    Message,
    Recipient,
}

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Client,
    Network,
}

impl Scope {
    /// Metric `check` label for `what` refused at this scope.
    pub fn label(self, what: Counted) -> &'static str {
        match (self, what) {
            (Scope::Client, Counted::Connection) => "client_connection_rate",
            (Scope::Client, Counted::Message) => "client_message_rate",
            (Scope::Client, Counted::Recipient) => "client_recipient_rate",
            (Scope::Network, Counted::Connection) => "network_connection_rate",
            (Scope::Network, Counted::Message) => "network_message_rate",
            (Scope::Network, Counted::Recipient) => "network_recipient_rate",
        }
    }
}

/// A login over its hourly cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverHourly {
    pub cap: u32,
    /// First refusal this hour: raise the event.
    pub notify: bool,
}

pub struct Rates {
    client: Trio,
    network: Trio,
    users: HashMap<String, (u32, Keyed<()>)>,
    /// When each login last raised its event (governor clock ns).
    notified: Mutex<HashMap<String, u64>>,
    trusted: Vec<IpNet>,
    clock: GovClock,
    checks: AtomicU64,
}

struct Trio {
    connections: Option<Keyed<IpAddr>>,
    messages: Option<Keyed<IpAddr>>,
    recipients: Option<Keyed<IpAddr>>,
}

impl Trio {
    fn new(l: &RateLimits, clock: &GovClock) -> Trio {
        let per_minute = |n: u32| {
            NonZeroU32::new(n)
                .map(|n| RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock.clone()))
        };
        Trio {
            connections: per_minute(l.connections_per_minute),
            messages: per_minute(l.messages_per_minute),
            recipients: per_minute(l.recipients_per_minute),
        }
    }

    fn get(&self, what: Counted) -> Option<&Keyed<IpAddr>> {
        match what {
            Counted::Connection => self.connections.as_ref(),
            Counted::Message => self.messages.as_ref(),
            Counted::Recipient => self.recipients.as_ref(),
        }
    }

    fn sweep(&self) {
        for l in [&self.connections, &self.messages, &self.recipients]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

impl Rates {
    pub fn new(config: &Config, clock: &Clock) -> Rates {
        let clock = GovClock(clock.clone());
        let users = config
            .submission
            .users
            .iter()
            .filter_map(|u| {
                let cap = NonZeroU32::new(u.max_messages_per_hour?)?;
                let limiter = RateLimiter::dashmap_with_clock(Quota::per_hour(cap), clock.clone());
                Some((u.name.clone(), (cap.get(), limiter)))
            })
            .collect();
        Rates {
            client: Trio::new(&config.rates.client, &clock),
            network: Trio::new(&config.rates.network, &clock),
            users,
            notified: Mutex::default(),
            trusted: config.relay.trusted_networks.clone(),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one `what` from `ip`; the scope whose limit it exceeds, if any.
    pub fn check(&self, what: Counted, ip: IpAddr) -> Result<(), Scope> {
        if self.trusted.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.client.sweep();
            self.network.sweep();
        }
        if let Some(l) = self.client.get(what)
            && l.check_key(&ip).is_err()
        {
            return Err(Scope::Client);
        }
        if let Some(l) = self.network.get(what)
            && l.check_key(&network(ip)).is_err()
        {
            return Err(Scope::Network);
        }
        Ok(())
    }

    /// Counts one message from login `user`; `Err` when it is over its hourly cap.
    pub fn check_user(&self, user: &str) -> Result<(), OverHourly> {
        let Some((cap, limiter)) = self.users.get(user) else {
            return Ok(());
        };
        if limiter.check_key(&()).is_ok() {
            return Ok(());
        }
        let now = self.clock.now().as_u64();
        let mut notified = self.notified.lock().unwrap_or_else(PoisonError::into_inner);
        let last = notified.get(user).copied();
        let notify = last.is_none_or(|t| now.saturating_sub(t) >= EVENT_EVERY_NS);
        if notify {
            notified.insert(user.to_string(), now);
        }
        Err(OverHourly { cap: *cap, notify })
    }
}

/// The client's network: IPv4 /24, IPv6 /64 (one site's allocation).
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(
            network("192.0.2.77".parse().expect("ip")),
            "192.0.2.0".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn neighbours_share_the_network_limit_and_trusted_networks_are_exempt() {
        let mut config = Config::default();
        config.rates.network.messages_per_minute = 2;
        config.relay.trusted_networks = vec!["192.0.2.128/25".parse().expect("net")];
        let rates = Rates::new(&config, &Clock::system());
        let ip = |last: u8| IpAddr::from([192, 0, 2, last]);
        assert_eq!(rates.check(Counted::Message, ip(1)), Ok(()));
        assert_eq!(rates.check(Counted::Message, ip(2)), Ok(()));
        assert_eq!(rates.check(Counted::Message, ip(3)), Err(Scope::Network));
        assert_eq!(
            rates.check(Counted::Recipient, ip(3)),
            Ok(()),
            "other counter"
        );
        assert_eq!(rates.check(Counted::Message, ip(200)), Ok(()), "trusted");
        assert_eq!(
            rates.check(Counted::Message, IpAddr::from([192, 0, 3, 1])),
            Ok(())
        );
    }

    #[test]
    fn a_login_over_its_cap_is_refused_and_notified_once_an_hour() {
        let config: Config = toml::from_str(
            "[[submission.users]]\nname = \"odoo\"\npassword_hash = \"x\"\nmax_messages_per_hour = 1\n",
        )
        .expect("config");
        let clock = Clock::system();
        let rates = Rates::new(&config, &clock);
        assert_eq!(rates.check_user("odoo"), Ok(()));
        assert_eq!(
            rates.check_user("odoo"),
            Err(OverHourly {
                cap: 1,
                notify: true
            })
        );
        assert_eq!(
            rates.check_user("odoo"),
            Err(OverHourly {
                cap: 1,
                notify: false
            })
        );
        assert_eq!(rates.check_user("other"), Ok(()), "no cap");
        clock.advance(std::time::Duration::from_secs(3600));
        assert_eq!(rates.check_user("odoo"), Ok(()), "a new cell after an hour");
        assert_eq!(
            rates.check_user("odoo"),
            Err(OverHourly {
                cap: 1,
                notify: true
            })
        );
    }
}
