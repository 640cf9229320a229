//! TLS-RPT (RFC 8460): what direct-MX TLS sessions came to, counted per recipient domain
//! and day, and the daily aggregate sent to the `rua` of each domain that publishes
//! `_smtp._tls`.
//!
//! - [`Recorder`]: one count per session (the [`tls_policy`](super::tls_policy) check of
//!   each STARTTLS to an MX host calls it), by policy type (`sts`, `no-policy-found`, and
//!   `tlsa` for DANE: [`Recorder::record`] with [`PolicyType::Tlsa`]) and result type.
//!   Counters live in the `stats` family (merge add), keys `T/<day><domain>\0<policy
//!   type>\0<result>\0<mx>`, so they survive restarts and cost one unsynced merge each.
//! - [`rfc8460`]: the `_smtp._tls` record and the JSON report (sans I/O).
//! - Sending is [`tls_report`](super::tls_report)'s: once a (clock) day is over, each
//!   domain's report is built, gzip'd, mailed and POSTed, then its counters are dropped
//!   ([`finished`], [`drop_counts`]).
//!
//! Every domain's sessions are counted, and `_smtp._tls` is asked only when the day is
//! reported: one TXT lookup per domain and day instead of one per session; counts of a
//! domain without the record are dropped then.

pub mod rfc8460;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::stats::{StatsError, store::Store};

/// Key prefix of the session counters in the `stats` family.
pub const COUNTS: &[u8] = b"T/";
const SEP: u8 = 0;
pub const DAY_MS: u64 = 86_400_000;

/// RFC 8460 §4.3.1.1 `policy-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyType {
    Sts,
    /// DANE (RFC 7672); recorded by the DANE check.
    Tlsa,
    NoPolicyFound,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }

    fn parse(s: &str) -> Option<PolicyType> {
        [PolicyType::Sts, PolicyType::Tlsa, PolicyType::NoPolicyFound]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// RFC 8460 §4.3.2.1 `result-type`: why a session failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResultType {
    StartTlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl ResultType {
    pub const ALL: [ResultType; 11] = [
        ResultType::StartTlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StartTlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    fn parse(s: &str) -> Option<ResultType> {
        ResultType::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Counts sessions (in the metrics always, in the store for reports when TLS-RPT is on);
/// cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    /// `None`: `relay.tls_rpt.enabled = false`, nothing kept for reports.
    store: Option<Store>,
    clock: Clock,
    metrics: Metrics,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    pub fn new(store: Option<Store>, clock: Clock, metrics: Metrics) -> Recorder {
        Recorder {
            store,
            clock,
            metrics,
        }
    }

    /// One session to MX host `mx` of recipient domain `domain` under `policy`: successful
    /// (`None`) or failed with `failure`. A store that cannot count is logged, not fatal:
    /// the report is worth less than the mail.
    pub fn record(&self, domain: &str, policy: PolicyType, mx: &str, failure: Option<ResultType>) {
        let result = failure.map_or("success", ResultType::as_str);
        self.metrics.outbound_tls_session(policy.as_str(), result);
        let Some(store) = &self.store else { return };
        let day = self.clock.now_ms() / DAY_MS;
        let session = Session {
            day,
            domain: domain.to_ascii_lowercase(),
            policy,
            failure,
            // Successes are summed per policy; failure details name the MX host.
            mx: if failure.is_some() {
                mx.trim_end_matches('.').to_ascii_lowercase()
            } else {
                String::new()
            },
        };
        if let Err(e) = store.add(&session.key(), 1) {
            tracing::warn!(error = %e, domain, "TLS-RPT: cannot count the session");
        }
    }
}

/// One counter's dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub day: u64,
    pub domain: String,
    pub policy: PolicyType,
    pub failure: Option<ResultType>,
    pub mx: String,
}

impl Session {
    fn key(&self) -> Vec<u8> {
        let mut k = day_prefix(self.day);
        for (i, part) in [
            self.domain.as_str(),
            self.policy.as_str(),
            self.failure.map_or("", ResultType::as_str),
            self.mx.as_str(),
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                k.push(SEP);
            }
            k.extend(part.bytes().filter(|b| *b != SEP));
        }
        k
    }

    /// The counter of key `k`; `None` for a key of another layout.
    fn parse(k: &[u8]) -> Option<Session> {
        let rest = k.strip_prefix(COUNTS)?;
        let (day, rest) = rest.split_first_chunk::<8>()?;
        let text = std::str::from_utf8(rest).ok()?;
        let mut parts = text.split('\0');
        let (domain, policy, failure, mx) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Session {
            day: u64::from_be_bytes(*day),
            domain: domain.to_string(),
            policy: PolicyType::parse(policy)?,
            failure: if failure.is_empty() {
                None
            } else {
                Some(ResultType::parse(failure)?)
            },
            mx: mx.to_string(),
        })
    }
}

/// Every counter of days before `day`, in key order (day, then domain), with its key.
pub fn finished(store: &Store, day: u64) -> Result<Vec<(Vec<u8>, Session, i64)>, StatsError> {
    let mut out = Vec::new();
    store.scan(COUNTS, &day_prefix(day), |k, v| {
        if let Some(s) = Session::parse(k) {
            out.push((k.to_vec(), s, crate::db::decode_i64(v)));
        }
    })?;
    Ok(out)
}

/// Removes counters `keys` of `domain` on `day` in one batch, with the marks of the
/// `rua`s its report went to (a reported domain-day).
pub fn drop_counts(
    store: &Store,
    day: u64,
    domain: &str,
    keys: &[Vec<u8>],
) -> Result<(), StatsError> {
    let marks = sent_prefix(day, domain);
    let mut sent = Vec::new();
    store.scan(&marks, &crate::db::prefix_end(&marks), |k, _| {
        sent.push(k.to_vec());
    })?;
    store.with(|cf| {
        let mut batch = rocksdb::WriteBatch::default();
        for k in keys.iter().chain(&sent) {
            cf.delete_in(&mut batch, k);
        }
        Ok(cf.write(batch, false)?)
    })
}

/// Key prefix of "report sent to this rua" marks: `R/<day><domain>\0<rua>`, so that a
/// domain-day kept for a failed `rua` is not sent again to those that took it.
const SENT: &[u8] = b"R/";

fn sent_prefix(day: u64, domain: &str) -> Vec<u8> {
    let mut k = SENT.to_vec();
    k.extend_from_slice(&day.to_be_bytes());
    k.extend(domain.bytes().filter(|b| *b != SEP));
    k.push(SEP);
    k
}

fn sent_key(day: u64, domain: &str, rua: &str) -> Vec<u8> {
    let mut k = sent_prefix(day, domain);
    k.extend_from_slice(rua.as_bytes());
    k
}

/// Whether `domain`'s report of `day` already went to `rua`.
pub fn was_sent(store: &Store, day: u64, domain: &str, rua: &str) -> bool {
    store
        .with(|cf| Ok(cf.get(sent_key(day, domain, rua))?))
        .is_ok_and(|v| v.is_some())
}

/// Notes that `domain`'s report of `day` went to `rua`.
pub fn mark_sent(store: &Store, day: u64, domain: &str, rua: &str) -> Result<(), StatsError> {
    store.put(&sent_key(day, domain, rua), b"")
}

/// `T/<day>`: counters of one day sort together, days in order.
fn day_prefix(day: u64) -> Vec<u8> {
    let mut k = COUNTS.to_vec();
    k.extend_from_slice(&day.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_reads_back_and_days_sort_in_order() {
        let s = Session {
            day: 20_000,
            domain: "example.com".into(),
            policy: PolicyType::Sts,
            failure: Some(ResultType::CertificateHostMismatch),
            mx: "mx.example.com".into(),
        };
        assert_eq!(Session::parse(&s.key()), Some(s.clone()));
        let ok = Session {
            failure: None,
            mx: String::new(),
            ..s.clone()
        };
        assert_eq!(Session::parse(&ok.key()), Some(ok));
        let later = Session {
            day: 20_001,
            ..s.clone()
        };
        assert!(later.key() > s.key());
        assert_eq!(Session::parse(b"T/short"), None);
    }
}
