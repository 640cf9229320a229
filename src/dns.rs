//! One DNS resolver for the whole server, built once in `server.rs` from `[dns]`.
//!
//! [`Dns`] wraps mail-auth's `MessageAuthenticator` (a hickory `TokioResolver`, whose own
//! cache holds raw answers) plus caches of *parsed* records — SPF, DKIM keys, DMARC policies,
//! MX, A/AAAA, PTR — so that a message from a known sender costs no DNS round trip and no
//! record parsing. Both caches are bounded by `dns.cache_size` and honour record TTLs.
//!
//! Invariant: a resolver failure (timeout, SERVFAIL, unreachable server) is a *temporary*
//! error everywhere it surfaces; only an authoritative "no such record" is permanent.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{MX, MessageAuthenticator, RecordSet, ResolverCache, Txt};

use crate::config::DnsConfig;

mod dnssec;
pub use dnssec::{Dnssec, SecureLookupError, Secured, Tlsa};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConf(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// The shared resolver. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    authenticator: MessageAuthenticator,
    caches: Caches,
    /// The validating path for DANE ([`dnssec`]), on the same nameservers.
    dnssec: Dnssec,
}

/// Parsed-record caches handed to mail-auth's lookups.
pub struct Caches {
    pub txt: TtlCache<Box<str>, Txt>,
    pub mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

impl Dns {
    /// Builds the resolver `[dns]` describes: the listed `ip:port` servers over UDP with TCP
    /// fallback (large TXT records such as 2048-bit DKIM keys truncate over UDP), or the
    /// system's `/etc/resolv.conf` when the list is empty.
    pub fn from_config(cfg: &DnsConfig) -> Result<Dns, Error> {
        let (config, mut opts) = if cfg.nameservers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| Error::SystemConf(e.to_string()))?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.timeout = cfg.timeout.get();
        // One retry: SPF may need ten lookups, each bounded by `timeout`; more attempts
        // would only stretch a dead server's cost per message.
        opts.attempts = 1;
        opts.cache_size = cfg.cache_size as u64;
        let anchor = cfg.dnssec_trust_anchor.as_os_str();
        let anchor = (!anchor.is_empty()).then_some(cfg.dnssec_trust_anchor.as_path());
        let dnssec = Dnssec::new(config.clone(), opts.clone(), anchor)?;
        let authenticator =
            MessageAuthenticator::new(config, opts).map_err(|e| Error::Build(e.to_string()))?;
        let n = cfg.cache_size.max(16);
        Ok(Dns {
            inner: Arc::new(Inner {
                authenticator,
                caches: Caches {
                    txt: TtlCache::new(n),
                    mx: TtlCache::new(n),
                    ipv4: TtlCache::new(n),
                    ipv6: TtlCache::new(n),
                    ptr: TtlCache::new(n),
                },
                dnssec,
            }),
        })
    }

    /// mail-auth's entry point (SPF, DKIM, DMARC, ARC, iprev and raw lookups).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.inner.authenticator
    }

    pub fn caches(&self) -> &Caches {
        &self.inner.caches
    }

    /// The DNSSEC-validating lookups (DANE).
    pub fn dnssec(&self) -> &Dnssec {
        &self.inner.dnssec
    }

    /// Records, for the negative answer's TTL, which of `names` (FQDNs spelled as mail-auth
    /// keys its TXT cache) have no TXT record, so that mail-auth's next lookup of them is
    /// answered by [`Caches::txt`]. mail-auth caches the records it parses but not the names
    /// that have none, so the DMARC tree walk asked hickory again, on every message, for
    /// every level without a record (`_dmarc.com.` for most senders) — 1.9% of the session
    /// worker's CPU under load (issue 13). Names already cached cost one map lookup; the
    /// others are asked in a task of their own (the caller just looked them up, so hickory
    /// answers from its cache) and the session does not wait. A record, a failure, or a
    /// negative answer without the zone's SOA (RFC 2308 §5: not to be cached) leaves the
    /// cache as it was.
    pub fn learn_absent_txt(&self, names: impl IntoIterator<Item = String>) {
        let cache = &self.inner.caches.txt;
        let missing: Vec<String> = names
            .into_iter()
            .filter(|n| cache.get(n.as_str()).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let dns = self.clone();
        runtime.spawn(async move {
            for name in missing {
                dns.cache_if_absent(name).await;
            }
        });
    }

    async fn cache_if_absent(&self, name: String) {
        use mail_auth::hickory_resolver::net::{DnsError, NetError};
        let Err(NetError::Dns(DnsError::NoRecordsFound(none))) = self
            .inner
            .authenticator
            .resolver()
            .txt_lookup(name.as_str())
            .await
        else {
            return;
        };
        let Some(ttl) = none.negative_ttl else {
            return;
        };
        let absent = mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(none.response_code));
        let until = Instant::now() + std::time::Duration::from_secs(ttl.into());
        self.inner
            .caches
            .txt
            .insert(name.into_boxed_str(), Txt::Error(absent), until);
    }

    /// Every TXT string at `name` (character-strings of one record joined, RFC 7208 §3.3).
    /// `Ok(empty)` means the name has no TXT record (NXDOMAIN or no data).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        use mail_auth::hickory_resolver::proto::rr::RData;
        let fqdn = fqdn(name);
        match self
            .inner
            .authenticator
            .resolver()
            .txt_lookup(fqdn.as_str())
            .await
        {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }

    /// MX hosts of `domain`, lowest preference first, lower-cased, without the final dot.
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, LookupError> {
        use mail_auth::hickory_resolver::proto::rr::RData;
        match self
            .inner
            .authenticator
            .resolver()
            .mx_lookup(fqdn(domain).as_str())
            .await
        {
            Ok(lookup) => {
                let mut v: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, host_name(&mx.exchange.to_ascii()))),
                        _ => None,
                    })
                    .collect();
                v.sort();
                Ok(v)
            }
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }

    /// The A records at `name` alone (a DNSBL answer: no AAAA query, no CNAME chase
    /// beyond the resolver's); empty when it has none.
    pub async fn ipv4(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        use mail_auth::hickory_resolver::proto::rr::RData;
        match self
            .inner
            .authenticator
            .resolver()
            .ipv4_lookup(fqdn(name).as_str())
            .await
        {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }

    /// A and AAAA addresses of `host`; empty when it has none.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        match self
            .inner
            .authenticator
            .resolver()
            .lookup_ip(fqdn(host).as_str())
            .await
        {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }
}

/// A DNS lookup that could not be answered (timeout, SERVFAIL, network): temporary.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub struct LookupError(pub String);

fn fqdn(name: &str) -> String {
    let mut s = name.trim().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// `Mx.Example.TEST.` → `mx.example.test`.
pub fn host_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A bounded map whose entries expire at their DNS TTL. When full, expired entries go
/// first, then everything (a cache miss only costs one lookup; an LRU would cost a lock
/// and bookkeeping on every hit, which is the hot path).
pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // inserts/removes), so a poisoned lock is still safe to use.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.lock();
        match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ttl_cache_expires_and_stays_bounded() {
        let c: TtlCache<Box<str>, u32> = TtlCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert("a".into(), 1, later);
        c.insert("gone".into(), 2, Instant::now());
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("gone"), None);
        c.insert("b".into(), 3, later);
        c.insert("c".into(), 4, later);
        assert!(c.len() <= 2);
        assert_eq!(c.get("c"), Some(4));
    }

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(host_name("Mx.Example.TEST."), "mx.example.test");
        assert_eq!(fqdn("example.test"), "example.test.");
    }
}
