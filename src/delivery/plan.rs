//! Where a relayed recipient goes: the ordered [`Hop`]s one attempt tries (SPEC "Queue and
//! delivery").
//!
//! - Smart hosts of the message's stream (`streams.mass_smarthosts`: mass mail only those,
//!   transactional mail all others; unset = all for both) whose `from_filter` takes the
//!   sender, lowest `priority` first (ties in config order). When one matches, only smart
//!   hosts are used.
//! - Every hop carries the stream's source IP (`streams.*_source_ip`), if any; with a pool
//!   (`streams.*_source_ips`), the first of the pool's order for the recipient domain
//!   ([`pools`](super::pools)), which warming may replace by a later one with room.
//! - Otherwise, with `relay.direct_mx`: the recipient domain's MX hosts by preference
//!   (RFC 5321 §5.1), the domain itself when it has no MX (implicit MX), permanent failure
//!   for a null MX (RFC 7505) or a domain with neither. DNS failures are temporary.
//! - DANE (RFC 7672, `relay.dane`, [`dane`]): while the resolvers give validatable DNSSEC
//!   answers, the MX RRset and the hosts' addresses are looked up validating; a bogus
//!   answer defers, and a host whose MX and addresses are secure gets its TLSA policy.
//! - Otherwise there is no route: deferred, so fixing the config releases the mail.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::dane::{self, TlsaPolicy};
use super::pools::SourcePools;
use super::smtp::{Hop, HopAuth, TlsMode};
use crate::config::{Config, HostAddr, Security, SmarthostAuth, SmarthostConfig};
use crate::dns::{Dns, Dnssec, Secured};
use crate::envelope::Stream;
use crate::providers::ProviderTable;
use crate::reply;

/// Why no hop could be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// Permanent: null MX, or no MX and no address. The text is the recorded reply.
    #[error("{0}")]
    Unroutable(String),
    /// Temporary: DNS did not answer, or no route is configured for this sender.
    #[error("{0}")]
    Later(String),
}

/// Where one relayed recipient goes: the hops to try, the source IP they leave from and,
/// when asked for, the recipient's mailbox provider (what warming caps and counts).
#[derive(Debug)]
pub struct Plan {
    pub hops: Vec<Hop>,
    /// The source IP the hops leave from (`streams.*_source_ip(s)`); `None` = the OS picks.
    pub source: Option<IpAddr>,
    /// The stream's source IPs in the order this recipient domain tries them (empty
    /// without a configured source).
    pub sources: Vec<IpAddr>,
    /// The provider label by `providers` (domain, then MX hosts); `None` when not asked.
    pub provider: Option<String>,
}

/// The plan for recipient domain `domain` of a `stream` message from `sender`
/// (`local@domain`); `pools` knows which source IPs the host lacks. With `providers`, the recipient's provider is placed too: by its
/// domain, else by its MX hosts — the MX lookup of direct delivery when there was one, so a
/// domain's MX is asked once per attempt.
pub async fn plan(
    config: &Config,
    pools: &SourcePools,
    dns: Option<&Dns>,
    providers: Option<&ProviderTable>,
    sender: &str,
    domain: &str,
    stream: Stream,
) -> Result<Plan, PlanError> {
    let sources = pools.order(&config.streams.source_pool(stream), domain);
    let (hops, mx) = hops(config, dns, sender, domain, stream).await?;
    let provider = match providers {
        Some(table) => Some(provider(table, dns, domain, mx).await),
        None => None,
    };
    let mut plan = Plan {
        hops,
        source: None,
        sources,
        provider,
    };
    if let Some(first) = plan.sources.first() {
        plan.use_source(*first);
    }
    Ok(plan)
}

impl Plan {
    /// Every hop leaves from `ip` from now on.
    pub fn use_source(&mut self, ip: IpAddr) {
        self.source = Some(ip);
        for hop in &mut self.hops {
            hop.source = Some(ip);
        }
    }
}

/// The hops, and the domain's MX host names when direct delivery looked them up.
async fn hops(
    config: &Config,
    dns: Option<&Dns>,
    sender: &str,
    domain: &str,
    stream: Stream,
) -> Result<(Vec<Hop>, Option<Vec<String>>), PlanError> {
    let hosts = smarthosts(config, sender, stream);
    if !hosts.is_empty() {
        let mut hops = Vec::with_capacity(hosts.len());
        for h in hosts {
            hops.push(smarthost_hop(h).await);
        }
        return Ok((hops, None));
    }
    if !config.relay.direct_mx {
        return Err(PlanError::Later(format!(
            "{} (sender {sender:?}, {} stream; relay.direct_mx is off)",
            reply::NO_RELAY_ROUTE,
            stream.as_str()
        )));
    }
    let Some(dns) = dns else {
        return Err(PlanError::Later("DNS resolver not available".into()));
    };
    let dnssec = (config.relay.dane && dns.dnssec().validating().await).then(|| dns.dnssec());
    let mx = match dnssec {
        // RFC 7672 §2.2.1: a bogus MX RRset defers; only a secure one lets TLSA count.
        Some(v) => v
            .mx(domain)
            .await
            .map_err(|e| PlanError::Later(format!("{domain}: {e}")))?,
        None => Secured {
            value: dns
                .mx(domain)
                .await
                .map_err(|e| PlanError::Later(format!("{domain}: {e}")))?,
            secure: false,
        },
    };
    let names = mx.value.iter().map(|(_, h)| h.clone()).collect();
    let lookups = Lookups {
        dns,
        dnssec: dnssec.filter(|_| mx.secure),
    };
    Ok((
        mx_hops(lookups, domain, mx.value, config.relay.mx_port).await?,
        Some(names),
    ))
}

/// The lookups of MX hosts' addresses: plain, or validating when DANE applies (the MX
/// RRset was secure), in which case each host's TLSA policy is looked up too.
#[derive(Clone, Copy)]
struct Lookups<'a> {
    dns: &'a Dns,
    dnssec: Option<&'a Dnssec>,
}

impl Lookups<'_> {
    /// The addresses of MX host `name`, and its DANE policy (RFC 7672 §2.2.2: only for a
    /// host whose addresses are secure).
    async fn host(
        &self,
        name: &str,
        port: u16,
        domain: &str,
    ) -> Result<(Vec<IpAddr>, Option<Arc<TlsaPolicy>>), String> {
        let Some(dnssec) = self.dnssec else {
            return self
                .dns
                .ips(name)
                .await
                .map(|ips| (ips, None))
                .map_err(|e| e.to_string());
        };
        let ips = dnssec.ips(name).await.map_err(|e| e.to_string())?;
        let policy = if ips.secure {
            dane::policy(dnssec, name, port, domain).await
        } else {
            None
        };
        Ok((ips.value, policy))
    }
}

/// The provider label of recipient domain `domain`: by the domain alone, else by its MX
/// hosts (`mx`, or looked up here; none on DNS trouble, which makes it `other`).
async fn provider(
    table: &ProviderTable,
    dns: Option<&Dns>,
    domain: &str,
    mx: Option<Vec<String>>,
) -> String {
    if let Some(p) = table.by_domain(domain) {
        return p;
    }
    let hosts = match (mx, dns) {
        (Some(hosts), _) => hosts,
        (None, Some(dns)) => dns
            .mx(domain)
            .await
            .map(|mx| mx.into_iter().map(|(_, h)| h).collect())
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    table.by_hosts(domain, &hosts)
}

/// Smart hosts that take `sender`'s mail of `stream`, in the order they are tried.
pub fn smarthosts<'a>(
    config: &'a Config,
    sender: &str,
    stream: Stream,
) -> Vec<&'a SmarthostConfig> {
    let mut hosts: Vec<&SmarthostConfig> = config
        .relay
        .smarthosts
        .iter()
        .filter(|h| config.streams.smarthost_serves(&h.name, stream) && h.takes_from(sender))
        .collect();
    // Stable: equal priorities keep their config order.
    hosts.sort_by_key(|h| h.priority);
    hosts
}

/// The hop for one smart host. Its name is resolved by the system resolver (as Postfix's
/// relayhost); a name that does not resolve gives a hop without addresses, which fails as
/// a connection error and moves on to the next host.
pub async fn smarthost_hop(h: &SmarthostConfig) -> Hop {
    let addrs = match h.host.get() {
        Some(HostAddr::Ip(ip)) => vec![SocketAddr::new(*ip, h.port)],
        Some(HostAddr::Name(name)) => tokio::net::lookup_host((name.as_str(), h.port))
            .await
            .map(|a| a.collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let credentials = match h.auth {
        SmarthostAuth::Xoauth2 => Some(HopAuth::XOauth2 {
            user: h.username.clone(),
            smarthost: h.name.clone(),
        }),
        SmarthostAuth::Password => (!h.username.is_empty()).then(|| HopAuth::Password {
            user: h.username.clone(),
            password: h.password.clone(),
        }),
    };
    Hop {
        label: format!("smarthost {}", h.name),
        host: h.host.as_str().to_owned(),
        addrs,
        tls: match h.security {
            Security::Tls => TlsMode::Implicit,
            Security::Starttls => TlsMode::StartTls,
            Security::None => TlsMode::None,
        },
        tls_verify: h.tls_verify,
        credentials,
        dest: format!("smarthost:{}", h.name),
        source: None,
        tls_policy: None,
        dane: None,
        ca_file: h.ca_file.as_ref().and_then(|c| c.get()).cloned(),
        mx_secure: false,
        sts_authorised: false,
    }
}

/// The hops of direct delivery to `domain`, whose MX records are `mx`.
async fn mx_hops(
    lookups: Lookups<'_>,
    domain: &str,
    mx: Vec<(u16, String)>,
    port: u16,
) -> Result<Vec<Hop>, PlanError> {
    // RFC 7505 §3: a single MX with the root as exchange ("." → "").
    if mx.len() == 1 && mx[0].1.is_empty() {
        return Err(PlanError::Unroutable(reply::NULL_MX.to_string()));
    }
    let names: Vec<String> = if mx.is_empty() {
        // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
        vec![domain.to_string()]
    } else {
        mx.into_iter()
            .map(|(_, host)| host)
            .filter(|h| !h.is_empty())
            .collect()
    };
    let mut hops = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match lookups.host(&name, port, domain).await {
            Ok((ips, dane)) if !ips.is_empty() => hops.push(Hop {
                label: format!("mx {name}"),
                host: name.clone(),
                addrs: ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect(),
                tls: TlsMode::Opportunistic,
                tls_verify: false,
                credentials: None,
                dest: format!("mx:{}", domain.to_ascii_lowercase()),
                source: None,
                tls_policy: None,
                dane,
                ca_file: None,
                mx_secure: lookups.dnssec.is_some(),
                sts_authorised: false,
            }),
            Ok(_) => failures.push(format!("{name}: no address")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if !hops.is_empty() {
        return Ok(hops);
    }
    let all_missing = failures.iter().all(|f| f.ends_with("no address"));
    if all_missing {
        Err(PlanError::Unroutable(format!(
            "{} ({domain})",
            reply::NO_SUCH_DOMAIN
        )))
    } else {
        Err(PlanError::Later(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        Config::from_toml(extra, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn smarthosts_are_filtered_by_sender_and_ordered_by_priority() {
        let c = config(
            r#"
[[relay.smarthosts]]
name = "backup"
host = "127.0.0.1"
priority = 20
[[relay.smarthosts]]
name = "news"
host = "127.0.0.1"
priority = 1
from_filter = "news@example.test"
[[relay.smarthosts]]
name = "primary"
host = "127.0.0.1"
priority = 10
[[relay.smarthosts]]
name = "other"
host = "127.0.0.1"
priority = 5
from_filter = "@other.test"
"#,
        );
        let names = |s: &str| -> Vec<String> {
            smarthosts(&c, s, Stream::Transactional)
                .iter()
                .map(|h| h.name.clone())
                .collect()
        };
        assert_eq!(names("odoo@example.test"), ["primary", "backup"]);
        assert_eq!(names("News@Example.test"), ["news", "primary", "backup"]);
        assert_eq!(names("a@other.test"), ["other", "primary", "backup"]);
    }

    #[tokio::test]
    async fn no_smarthost_and_no_direct_mx_is_a_temporary_failure() {
        let c = config("");
        let e = plan(
            &c,
            &SourcePools::default(),
            None,
            None,
            "a@example.test",
            "elsewhere.test",
            Stream::Transactional,
        )
        .await
        .expect_err("no route");
        assert!(matches!(e, PlanError::Later(_)), "{e:?}");
    }

    #[test]
    fn mass_smarthosts_split_the_hosts_between_the_streams() {
        let c = config(
            r#"
[streams]
mass_smarthosts = ["bulk", "bulk-news"]
[[relay.smarthosts]]
name = "main"
host = "127.0.0.1"
priority = 10
[[relay.smarthosts]]
name = "bulk"
host = "127.0.0.1"
priority = 1
[[relay.smarthosts]]
name = "bulk-news"
host = "127.0.0.1"
priority = 0
from_filter = "@news.example.test"
"#,
        );
        let names = |s: &str, stream| -> Vec<String> {
            smarthosts(&c, s, stream)
                .iter()
                .map(|h| h.name.clone())
                .collect()
        };
        assert_eq!(names("a@example.test", Stream::Mass), ["bulk"]);
        assert_eq!(
            names("a@news.example.test", Stream::Mass),
            ["bulk-news", "bulk"]
        );
        assert_eq!(
            names("a@news.example.test", Stream::Transactional),
            ["main"]
        );
        let shared = config("[[relay.smarthosts]]\nname = \"main\"\nhost = \"127.0.0.1\"\n");
        assert_eq!(smarthosts(&shared, "a@example.test", Stream::Mass).len(), 1);
    }

    #[tokio::test]
    async fn hops_carry_the_streams_source_ip() {
        let c = config(
            r#"
[streams]
mass_source_ip = "127.0.0.2"
[[relay.smarthosts]]
name = "main"
host = "127.0.0.1"
"#,
        );
        let pools = SourcePools::default();
        let hop = |stream| {
            plan(
                &c,
                &pools,
                None,
                None,
                "a@example.test",
                "remote.test",
                stream,
            )
        };
        let mass = hop(Stream::Mass).await.expect("planned").hops;
        assert_eq!(mass[0].source, Some("127.0.0.2".parse().expect("ip")));
        let tx = hop(Stream::Transactional).await.expect("planned").hops;
        assert_eq!(tx[0].source, None);
    }
}
