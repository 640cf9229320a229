//! The DNSSEC-validating lookup path DANE needs (RFC 7672 §2.1): a second hickory resolver
//! next to mail-auth's, asking the same `[dns] nameservers` with the DO bit and validating
//! every answer itself up to a trust anchor (hickory's root KSKs, or
//! `dns.dnssec_trust_anchor`).
//!
//! Separate from the resolver SPF/DKIM/DMARC use because a validating resolver turns a
//! bogus answer into an error: sender authentication must keep its own RFC semantics, and
//! only delivery to MX hosts acts on "secure", "insecure" and "bogus".
//!
//! Whether the upstream resolvers pass DNSSEC records at all is found out by asking for the
//! root zone's DNSKEY RRset ([`Dnssec::validating`]): a resolver that strips RRSIGs would
//! make every signed zone bogus, so without a secure root key nothing here is used (DANE
//! stays off and delivery is opportunistic, as without DNSSEC).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::{Error, fqdn, host_name};
use crate::metrics::Metrics;

/// How long a failed probe is believed before the root key is asked for again.
const PROBE_RETRY: Duration = Duration::from_secs(300);

/// The validating resolver. Cheap to clone.
#[derive(Clone)]
pub struct Dnssec {
    resolver: TokioResolver,
    /// `Some(true)`: the root DNSKEY validated once (kept for good); `Some(false)` until
    /// the instant: it did not, ask again after.
    probe: Arc<Mutex<Option<(bool, Instant)>>>,
    /// Where each probe's result is shown (`mxgate_dnssec_validating`), once the server
    /// has said so ([`Dnssec::report_to`]); the CLI's resolvers report nowhere.
    metrics: Arc<OnceLock<Metrics>>,
}

/// A validated answer: the values, and whether every record of it was proven secure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secured<T> {
    pub value: T,
    /// Every record chained to the trust anchor (RFC 4033 "secure"); `false` = insecure
    /// (no DNSSEC on the way) or no record at all.
    pub secure: bool,
}

/// A TLSA record (RFC 6698 §2.1), its fields as numbers: usages and matching types
/// mxgate does not know are judged by [`crate::delivery::dane`], not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// A validating lookup that gave no usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecureLookupError {
    /// The answer failed DNSSEC validation (RFC 4033 "bogus"): forged, stripped or stale
    /// signatures. Never used, never treated as "no record".
    #[error("DNSSEC validation failed for {0}")]
    Bogus(String),
    /// Timeout, SERVFAIL, network: temporary, as everywhere in [`crate::dns`].
    #[error("DNS lookup failed for {name}: {reason}")]
    Lookup { name: String, reason: String },
}

impl Dnssec {
    /// A validating resolver on `config`/`opts` (those of the main resolver), trusting the
    /// DNSKEY records in `trust_anchor` (zone-file lines, e.g. `. 3600 IN DNSKEY 257 3 8
    /// AwEAA…`), or hickory's built-in root KSKs when `None`.
    pub fn new(
        config: ResolverConfig,
        mut opts: ResolverOpts,
        trust_anchor: Option<&Path>,
    ) -> Result<Dnssec, Error> {
        let anchors = match trust_anchor {
            Some(path) => TrustAnchors::from_file(path).map_err(|e| {
                Error::Build(format!("dns.dnssec_trust_anchor {}: {e}", path.display()))
            })?,
            None => TrustAnchors::default(),
        };
        opts.validate = true;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .with_trust_anchor(Arc::new(anchors))
            .build()
            .map_err(|e| Error::Build(e.to_string()))?;
        Ok(Dnssec {
            resolver,
            probe: Arc::default(),
            metrics: Arc::default(),
        })
    }

    /// Shows every later probe's result in `metrics` (the first handle given stays).
    pub fn report_to(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Whether the resolvers deliver validatable answers: the root DNSKEY RRset chains to
    /// the trust anchor. Asked at first use, then again [`PROBE_RETRY`] after a failure.
    pub async fn validating(&self) -> bool {
        let known = *self.probe.lock().unwrap_or_else(|e| e.into_inner());
        match known {
            Some((true, _)) => return true,
            Some((false, until)) if Instant::now() < until => return false,
            _ => {}
        }
        let ok = match self.resolver.lookup(Name::root(), RecordType::DNSKEY).await {
            Ok(lookup) => all_secure(lookup.answers(), RecordType::DNSKEY),
            Err(_) => false,
        };
        if !ok {
            tracing::warn!(
                "the DNS resolvers give no validatable DNSSEC answer for the root key \
                 (dns.dnssec_trust_anchor, or resolvers stripping RRSIGs): DANE is not used \
                 until they do, MX hosts get opportunistic TLS"
            );
        }
        if let Some(m) = self.metrics.get() {
            m.dnssec_validating(ok);
        }
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((ok, Instant::now() + PROBE_RETRY));
        ok
    }

    /// MX hosts of `domain`, lowest preference first (as [`super::Dns::mx`]).
    pub async fn mx(&self, domain: &str) -> Result<Secured<Vec<(u16, String)>>, SecureLookupError> {
        let Some((records, secure)) = self.lookup(domain, RecordType::MX).await? else {
            return Ok(insecure(Vec::new()));
        };
        let mut mx: Vec<(u16, String)> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, host_name(&mx.exchange.to_ascii()))),
                _ => None,
            })
            .collect();
        mx.sort();
        Ok(Secured { value: mx, secure })
    }

    /// A and AAAA addresses of `host`; secure only when both answers are.
    pub async fn ips(&self, host: &str) -> Result<Secured<Vec<IpAddr>>, SecureLookupError> {
        let mut ips = Vec::new();
        let mut secure = true;
        for rtype in [RecordType::A, RecordType::AAAA] {
            let Some((records, sec)) = self.lookup(host, rtype).await? else {
                continue;
            };
            secure &= sec;
            ips.extend(records.iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        let secure = secure && !ips.is_empty();
        Ok(Secured { value: ips, secure })
    }

    /// The TLSA records at `name` (e.g. `_25._tcp.mx.example.net`).
    pub async fn tlsa(&self, name: &str) -> Result<Secured<Vec<Tlsa>>, SecureLookupError> {
        let Some((records, secure)) = self.lookup(name, RecordType::TLSA).await? else {
            return Ok(insecure(Vec::new()));
        };
        let tlsa = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(t) => Some(Tlsa {
                    usage: t.cert_usage.into(),
                    selector: t.selector.into(),
                    matching: t.matching.into(),
                    data: t.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok(Secured {
            value: tlsa,
            secure,
        })
    }

    /// The answer records of `name`/`rtype` and whether they are all secure; `None` when
    /// the name has no such record (secure or not: a denial only ever means "none").
    async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Option<(Vec<Record>, bool)>, SecureLookupError> {
        let fqdn = fqdn(name);
        match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) => {
                let records = lookup.answers().to_vec();
                let secure = all_secure(&records, rtype);
                Ok(Some((records, secure)))
            }
            Err(NetError::Dns(DnsError::DnssecBogus)) => Err(SecureLookupError::Bogus(format!(
                "{} {rtype}",
                host_name(&fqdn)
            ))),
            Err(e) if e.is_no_records_found() => Ok(None),
            // A denial of existence that validated as insecure or indeterminate.
            Err(NetError::Dns(DnsError::Nsec { proof, .. })) if proof != Proof::Bogus => Ok(None),
            Err(NetError::Dns(DnsError::Nsec { .. })) => Err(SecureLookupError::Bogus(format!(
                "{} {rtype}",
                host_name(&fqdn)
            ))),
            Err(e) => Err(SecureLookupError::Lookup {
                name: host_name(&fqdn),
                reason: e.to_string(),
            }),
        }
    }
}

fn insecure<T>(value: T) -> Secured<T> {
    Secured {
        value,
        secure: false,
    }
}

/// Every record of the answer (CNAMEs on the way included) is proven secure, and there is
/// at least one of the type asked for.
fn all_secure(records: &[Record], rtype: RecordType) -> bool {
    records.iter().any(|r| r.record_type() == rtype)
        && records
            .iter()
            .filter(|r| r.record_type() != RecordType::RRSIG)
            .all(|r| r.proof.is_secure())
}
