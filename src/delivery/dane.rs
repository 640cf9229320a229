//! DANE for SMTP (RFC 7672): what the TLSA records of an MX host demand of the connection
//! to it, as a [`TlsaPolicy`] the [`plan`](super::plan) puts on the [`Hop`](super::smtp::Hop)
//! and [`smtp::open`](super::smtp) obeys.
//!
//! - Only when the MX RRset and the host's address records are DNSSEC-secure is the TLSA
//!   RRset `_<port>._tcp.<mx host>` asked for (§2.2); an insecure or absent TLSA RRset keeps
//!   today's opportunistic TLS.
//! - Usable records: DANE-TA(2) and DANE-EE(3), selector Cert(0)/SPKI(1), matching
//!   Full(0)/SHA2-256(1)/SHA2-512(2) (§3.1). PKIX-TA/PKIX-EE are not usable for SMTP
//!   (§3.1.3). With usable records STARTTLS is mandatory and the certificate must match
//!   ([`verify`]); with secure records none of which is usable, STARTTLS is still mandatory
//!   but unauthenticated (§2.2).
//! - A bogus TLSA answer, or one that could not be had, makes the host unusable (§2.2.x):
//!   the hop fails with the reason, the next MX is tried, and the recipient is deferred
//!   when none takes it. Never plaintext.
//!
//! DANE takes precedence over MTA-STS (RFC 8461 §2): a hop with a [`TlsaPolicy`] follows
//! it alone.

mod verify;

use std::sync::Arc;

use tokio_rustls::TlsConnector;

use crate::dns::{Dnssec, Tlsa};

pub use verify::DaneVerifier;

/// What DANE demands of the TLS session to one MX host (RFC 7672 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsaPolicy {
    /// Usable TLSA records: STARTTLS mandatory, the certificate must match one of them.
    /// `names`: the reference identifiers a DANE-TA chain's leaf must carry (§3.2.3: the
    /// MX host name, then the recipient domain).
    Authenticate {
        records: Vec<Tlsa>,
        names: Vec<String>,
    },
    /// A secure TLSA RRset without a usable record: STARTTLS mandatory, any certificate.
    Encrypt,
    /// The TLSA lookup was bogus or failed: the host must not be used now.
    Unusable(String),
}

impl TlsaPolicy {
    /// Short form for logs and the pool key.
    pub fn as_label(&self) -> &'static str {
        match self {
            TlsaPolicy::Authenticate { .. } => "dane",
            TlsaPolicy::Encrypt => "dane-encrypt",
            TlsaPolicy::Unusable(_) => "dane-unusable",
        }
    }

    /// The connector that enforces this policy's certificate check; `None` for
    /// [`TlsaPolicy::Unusable`] (no connection is made).
    pub fn connector(&self, unverified: &TlsConnector) -> Option<TlsConnector> {
        match self {
            TlsaPolicy::Authenticate { records, names } => {
                Some(verify::connector(records.clone(), names.clone()))
            }
            TlsaPolicy::Encrypt => Some(unverified.clone()),
            TlsaPolicy::Unusable(_) => None,
        }
    }
}

/// The policy of MX host `host` (of recipient domain `domain`) reached on TCP `port`,
/// whose MX and address records were secure; `None` = no secure TLSA RRset (opportunistic).
pub async fn policy(
    dnssec: &Dnssec,
    host: &str,
    port: u16,
    domain: &str,
) -> Option<Arc<TlsaPolicy>> {
    let name = format!("_{port}._tcp.{host}");
    let answer = match dnssec.tlsa(&name).await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(mx = %host, error = %e, "DANE: TLSA lookup failed, MX host not used");
            return Some(Arc::new(TlsaPolicy::Unusable(format!("DANE: {e}"))));
        }
    };
    if !answer.secure || answer.value.is_empty() {
        return None;
    }
    let usable: Vec<Tlsa> = answer.value.into_iter().filter(usable).collect();
    if usable.is_empty() {
        return Some(Arc::new(TlsaPolicy::Encrypt));
    }
    let mut names = vec![host.to_ascii_lowercase()];
    if !domain.eq_ignore_ascii_case(host) {
        names.push(domain.to_ascii_lowercase());
    }
    Some(Arc::new(TlsaPolicy::Authenticate {
        records: usable,
        names,
    }))
}

/// RFC 7672 §3.1: DANE-TA(2) or DANE-EE(3), a known selector and matching type, and
/// association data of the digest's length.
fn usable(t: &Tlsa) -> bool {
    let data_ok = match t.matching {
        0 => !t.data.is_empty(),
        1 => t.data.len() == 32,
        2 => t.data.len() == 64,
        _ => false,
    };
    matches!(t.usage, 2 | 3) && matches!(t.selector, 0 | 1) && data_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlsa(usage: u8, selector: u8, matching: u8, len: usize) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: vec![7; len],
        }
    }

    #[test]
    fn only_dane_usages_with_known_parameters_are_usable() {
        assert!(usable(&tlsa(3, 1, 1, 32)));
        assert!(usable(&tlsa(2, 0, 2, 64)));
        assert!(usable(&tlsa(3, 0, 0, 300)));
        // PKIX-TA / PKIX-EE: not for SMTP (RFC 7672 §3.1.3).
        assert!(!usable(&tlsa(0, 0, 1, 32)));
        assert!(!usable(&tlsa(1, 1, 1, 32)));
        // Unknown selector / matching type, or a digest of the wrong length.
        assert!(!usable(&tlsa(3, 2, 1, 32)));
        assert!(!usable(&tlsa(3, 1, 3, 32)));
        assert!(!usable(&tlsa(3, 1, 1, 31)));
        assert!(!usable(&tlsa(3, 1, 0, 0)));
    }
}
