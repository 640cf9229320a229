//! Source IP pools (issue 17 item 6): which of a stream's source IPs
//! (`streams.mass_source_ips`, `transactional_source_ips`) a recipient's mail leaves from.
//!
//! Rotation is per destination domain, by weighted rendezvous hashing: every (IP,
//! recipient domain) pair gets a stable score, scaled by the IP's weight, and the domain's
//! IPs are tried best score first. So one destination domain always sees the same IP (its
//! provider builds that IP's reputation from a steady stream instead of a trickle over all
//! of them, and pooled connections to it are reused), while over many domains each IP takes
//! a share of the domains proportional to its weight. The order is the fallback order too:
//! when the first IP's warming tier or provider cap is spent, [`warming`](super::warming)
//! takes the next one with room before holding the recipient; when an IP cannot be bound
//! the [`relay`](super::relay) moves on to the next one. Removing an IP from the pool only
//! moves the domains that used it.
//!
//! An address the host lacks: probed at start ([`SourcePools::probe`], a bind to port 0,
//! one warning per address) and noticed again by the relay when a bind fails with
//! `EADDRNOTAVAIL` ([`SourcePools::mark_missing`]); such an address goes to the end of every
//! order, so it is used only if nothing else is left.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use crate::config::Config;
use crate::envelope::Stream;

/// The addresses of the configured pools this host lacks, as found so far.
#[derive(Default)]
pub struct SourcePools {
    missing: Mutex<HashSet<IpAddr>>,
}

impl SourcePools {
    /// Binds a socket to each address of `config`'s pools once: an address the host lacks
    /// is logged with one warning and remembered as missing.
    pub fn probe(config: &Config) -> SourcePools {
        let pools = SourcePools::default();
        for stream in [Stream::Transactional, Stream::Mass] {
            for (ip, _) in config.streams.source_pool(stream) {
                if let Err(e) = bind_probe(ip) {
                    pools.mark_missing(ip, stream, &e);
                }
            }
        }
        pools
    }

    /// Remembers `ip` as not an address of this host; warns the first time.
    pub fn mark_missing(&self, ip: IpAddr, stream: Stream, why: &dyn std::fmt::Display) {
        let new = self
            .missing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ip);
        if new {
            tracing::warn!(
                source_ip = %ip, stream = stream.as_str(), error = %why,
                "source IP of the pool is not an address of this host: skipped, the pool's other addresses are used"
            );
        }
    }

    /// `pool`'s addresses in the order mail to recipient domain `domain` tries them: by
    /// weighted rendezvous score, addresses known to be missing last.
    pub fn order(&self, pool: &[(IpAddr, u32)], domain: &str) -> Vec<IpAddr> {
        let missing = self.missing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ips = rendezvous(pool, domain);
        // Stable: the rendezvous order stays among present and among missing addresses.
        ips.sort_by_key(|ip| missing.contains(ip));
        ips
    }
}

/// Whether the host has `ip`: a bind to port 0, closed at once.
fn bind_probe(ip: IpAddr) -> std::io::Result<()> {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).map(drop)
}

/// `pool`'s addresses by weighted rendezvous score for `domain`, best first: each pair's
/// hash as a uniform `u` in (0, 1), score `-ln(u) / weight` (smallest wins); the winner is
/// then an address with probability weight / total weight, independently per domain.
fn rendezvous(pool: &[(IpAddr, u32)], domain: &str) -> Vec<IpAddr> {
    let domain = domain.to_ascii_lowercase();
    let mut scored: Vec<(f64, IpAddr)> = pool
        .iter()
        .map(|(ip, weight)| {
            let h = fnv1a(format!("{ip}|{domain}").as_bytes());
            // 53 bits → (0, 1]: never 0, so the logarithm is finite.
            let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
            (-u.ln() / f64::from((*weight).max(1)), *ip)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, ip)| ip).collect()
}

/// FNV-1a, 64 bit, with a final avalanche (fmix64 of MurmurHash3) so that inputs differing
/// only in their last bytes still spread over the whole range. Stable across runs and
/// builds, unlike std's `RandomState`: a domain keeps its IP across restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_domain_keeps_its_ip_and_domains_spread_by_weight() {
        let pool = [(ip("127.0.0.1"), 3), (ip("127.0.0.2"), 1)];
        let pools = SourcePools::default();
        let first = |d: &str| pools.order(&pool, d)[0];
        assert_eq!(first("Gmail.com"), first("gmail.com"));
        let heavy = (0..4000)
            .filter(|i| first(&format!("d{i}.test")) == ip("127.0.0.1"))
            .count();
        // Expected 3000 of 4000; a hash that ignored the weights would give about 2000.
        assert!((2700..3300).contains(&heavy), "{heavy} of 4000");
        // Every order names every address once.
        let mut all = pools.order(&pool, "x.test");
        all.sort();
        assert_eq!(all, [ip("127.0.0.1"), ip("127.0.0.2")]);
    }

    #[test]
    fn a_missing_address_goes_last_and_the_others_keep_their_order() {
        let pool = [
            (ip("127.0.0.1"), 1),
            (ip("127.0.0.2"), 1),
            (ip("192.0.2.1"), 50),
        ];
        let pools = SourcePools::default();
        let domain = (0..100)
            .map(|i| format!("d{i}.test"))
            .find(|d| pools.order(&pool, d)[0] == ip("192.0.2.1"))
            .expect("the heavy address wins some domain");
        let before = pools.order(&pool, &domain);
        pools.mark_missing(ip("192.0.2.1"), Stream::Mass, &"test");
        let after = pools.order(&pool, &domain);
        assert_eq!(after[..2], before[1..]);
        assert_eq!(after[2], ip("192.0.2.1"));
    }

    #[test]
    fn the_probe_finds_loopback_and_not_a_documentation_address() {
        assert!(bind_probe(ip("127.0.0.1")).is_ok());
        let e = bind_probe(ip("192.0.2.1")).expect_err("not an address of this host");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
    }
}
