//! DNSBL / DNSWL lookups at connect (issue 16 item 2), what postscreen does for Postfix.
//!
//! Input: the client IP. Output: a [`Verdict`] — refuse at the banner, tag the mail, or
//! nothing. Every configured zone is asked once per connection, all in parallel, through
//! the server's one resolver, whose cache keeps answers for their TTL (negative ones for
//! the zone's SOA minimum), so a client that reconnects costs no query.
//!
//! Invariant: DNS trouble never blocks. A zone that times out or fails counts as "not
//! listed"; the whole check is bounded by `dns.timeout`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tracing::{debug, info};

use crate::config::{DnsblAction, DnsblConfig};
use crate::dns::Dns;

/// The zones of `[[spam.dnsbl]]` and the resolver to ask.
pub struct Dnsbl {
    zones: Vec<DnsblConfig>,
    dns: Option<Dns>,
    timeout: Duration,
}

/// What the lists say about one client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The first `reject` zone that lists the client (none when an `allow` zone does).
    pub reject: Option<String>,
    /// `tag` zones that list the client, with the code they answered.
    pub tags: Vec<(String, Ipv4Addr)>,
    /// An `allow` zone (DNSWL) lists the client.
    pub allowed: bool,
}

impl Verdict {
    /// The `X-Mxgate-Dnsbl` field for accepted mail, when a `tag` zone listed the client.
    pub fn header(&self, ip: IpAddr) -> Option<String> {
        if self.tags.is_empty() {
            return None;
        }
        let mut zones = String::new();
        for (zone, code) in &self.tags {
            let sep = if zones.is_empty() { "" } else { ", " };
            let _ = write!(zones, "{sep}{zone}={code}");
        }
        Some(format!("X-Mxgate-Dnsbl: {zones}; client=[{ip}]\r\n"))
    }
}

impl Dnsbl {
    /// `dns` is `None` only where no resolver exists (then no zone is asked).
    pub fn new(zones: Vec<DnsblConfig>, dns: Option<Dns>, timeout: Duration) -> Dnsbl {
        Dnsbl {
            zones,
            dns,
            timeout,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() || self.dns.is_none()
    }

    /// Asks every zone about `ip`, in parallel.
    pub async fn check(&self, ip: IpAddr) -> Verdict {
        let Some(dns) = self.dns.as_ref().filter(|_| !self.zones.is_empty()) else {
            return Verdict::default();
        };
        let name = &reversed(ip);
        let lookups = self.zones.iter().map(|z| async move {
            let host = format!("{}.{}", name, z.zone.trim_end_matches('.'));
            let listed = match dns.ipv4(&host).await {
                Ok(answers) => answers.into_iter().find(|a| counts(z, *a)),
                Err(e) => {
                    info!(zone = %z.zone, error = %e, "DNSBL lookup failed; not listed");
                    None
                }
            };
            (z, listed)
        });
        let Ok(results) =
            tokio::time::timeout(self.timeout, futures::future::join_all(lookups)).await
        else {
            info!(peer = %ip, "DNSBL lookups timed out; not listed");
            return Verdict::default();
        };
        let mut v = Verdict::default();
        for (z, code) in results {
            let Some(code) = code else { continue };
            debug!(zone = %z.zone, code = %code, "listed");
            match z.action {
                DnsblAction::Reject if v.reject.is_none() => v.reject = Some(z.zone.clone()),
                DnsblAction::Reject => {}
                DnsblAction::Tag => v.tags.push((z.zone.clone(), code)),
                DnsblAction::Allow => v.allowed = true,
            }
        }
        if v.allowed {
            v.reject = None;
        }
        v
    }
}

/// Whether answer `a` from zone `z` means "listed".
fn counts(z: &DnsblConfig, a: Ipv4Addr) -> bool {
    if z.return_codes.is_empty() {
        let [first, second, third, _] = a.octets();
        first == 127 && !(second == 255 && third == 255)
    } else {
        z.return_codes.contains(&a)
    }
}

/// RFC 5782 §2.1/§2.4: IPv4 octets reversed; IPv6 as 32 nibbles, reversed.
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.pop();
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reversed_octets_and_nibbles() {
        assert_eq!(reversed("192.0.2.99".parse().expect("ip")), "99.2.0.192");
        assert_eq!(
            reversed("2001:db8::1".parse().expect("ip")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn default_return_codes_skip_the_query_refused_range() {
        let z = DnsblConfig {
            zone: "z".into(),
            action: DnsblAction::Reject,
            return_codes: Vec::new(),
        };
        assert!(counts(&z, Ipv4Addr::new(127, 0, 0, 2)));
        assert!(!counts(&z, Ipv4Addr::new(127, 255, 255, 254)));
        assert!(!counts(&z, Ipv4Addr::new(10, 0, 0, 2)));
        let only4 = DnsblConfig {
            return_codes: vec![Ipv4Addr::new(127, 0, 0, 4)],
            ..z
        };
        assert!(!counts(&only4, Ipv4Addr::new(127, 0, 0, 2)));
        assert!(counts(&only4, Ipv4Addr::new(127, 0, 0, 4)));
    }
}
