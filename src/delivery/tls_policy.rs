//! The TLS policy of one direct-MX session ([`SessionPolicy`]): what its STARTTLS must
//! achieve (MTA-STS `enforce`: a certificate valid for the MX host name, or the session is
//! refused) and where its result is counted ([`tls_rpt`](super::tls_rpt)).
//!
//! [`mta_sts`](super::mta_sts) builds one per recipient domain and attempt and puts it
//! on each MX [`Hop`](super::smtp::Hop); the SMTP session ([`smtp`](super::smtp)) calls
//! [`SessionPolicy::check`] right after STARTTLS, before any other command.
//!
//! Why the certificate is checked after the handshake and not by rustls inside it: one
//! handshake then serves `testing` (deliver whatever the check says) and `enforce` (quit
//! unless it passes), and the check's error is a typed `rustls::Error` that maps to the
//! RFC 8460 result type, where a failed handshake would only give an I/O error. Nothing is
//! sent on the session before the check, and the handshake itself still proves that the
//! server holds the certificate's key.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

use super::tls_rpt::{PolicyType, Recorder, ResultType};
use crate::config::CaFile;

/// Why a session failed its policy: the RFC 8460 result type and the words for the
/// deferral reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub result: ResultType,
    pub reason: String,
}

/// The policy one MX session runs under.
#[derive(Debug)]
pub struct SessionPolicy {
    /// The recipient domain whose policy this is (what TLS-RPT reports per).
    pub domain: String,
    pub policy_type: PolicyType,
    /// A failed check refuses the session (MTA-STS `enforce`); else it is only counted.
    pub enforce: bool,
    /// Checks the certificate (`sts`); `None` = not checked (no policy).
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// `None`: TLS-RPT is off.
    recorder: Option<Recorder>,
    /// Describes the policy in deferral reasons: `MTA-STS policy of example.com (enforce)`.
    pub label: String,
}

impl SessionPolicy {
    /// No policy: opportunistic TLS, only counted (`no-policy-found`).
    pub fn none(domain: &str, recorder: Option<Recorder>) -> SessionPolicy {
        SessionPolicy {
            domain: domain.to_string(),
            policy_type: PolicyType::NoPolicyFound,
            enforce: false,
            verifier: None,
            recorder,
            label: format!("no TLS policy for {domain}"),
        }
    }

    /// A policy whose certificate check uses `verifier` (see [`verifier`]).
    pub fn checked(
        domain: &str,
        policy_type: PolicyType,
        enforce: bool,
        verifier: Arc<WebPkiServerVerifier>,
        recorder: Option<Recorder>,
        label: String,
    ) -> SessionPolicy {
        SessionPolicy {
            domain: domain.to_string(),
            policy_type,
            enforce,
            verifier: Some(verifier),
            recorder,
            label,
        }
    }

    /// After STARTTLS to MX host `mx` (`chain`: the certificates it presented; `None` when
    /// it offered no STARTTLS): counts the session and, under `enforce`, refuses a failed
    /// one.
    pub fn check(
        &self,
        mx: &str,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<(), Failure> {
        let result = match (chain, &self.verifier) {
            (None, _) => Err(ResultType::StartTlsNotSupported),
            (Some(_), None) => Ok(()),
            (Some(chain), Some(v)) => verify(v, mx, chain),
        };
        self.count(mx, result.err());
        match result {
            Err(r) if self.enforce => Err(Failure {
                result: r,
                reason: format!("{}: {} ({mx})", self.label, r.as_str()),
            }),
            _ => Ok(()),
        }
    }

    /// A session that failed before [`check`](Self::check) could run (the TLS handshake
    /// itself failed).
    pub fn handshake_failed(&self, mx: &str) {
        self.count(mx, Some(ResultType::ValidationFailure));
    }

    /// A session to a host whose TLSA records (DANE) decided its TLS: counted for TLS-RPT
    /// under policy type `tlsa` (RFC 8460 §4.3), since DANE replaces the domain's MTA-STS
    /// policy for that host (RFC 8461 §2).
    pub fn dane_session(&self, mx: &str, failure: Option<ResultType>) {
        if let Some(r) = &self.recorder {
            r.record(&self.domain, PolicyType::Tlsa, mx, failure);
        }
    }

    fn count(&self, mx: &str, failure: Option<ResultType>) {
        if let Some(r) = &self.recorder {
            r.record(&self.domain, self.policy_type, mx, failure);
        }
    }
}

/// The certificate check of a policy: webpki roots plus `ca_file`, with the name of the MX
/// host (RFC 8461 §4.2: the certificate must name the MX host, by SAN, wildcards allowed).
pub fn verifier(ca_file: Option<&CaFile>) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = ca_file {
        roots.add_parsable_certificates(ca.certs.iter().cloned());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("the webpki roots are never empty")
}

fn verify(
    v: &WebPkiServerVerifier,
    mx: &str,
    chain: &[CertificateDer<'static>],
) -> Result<(), ResultType> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(ResultType::ValidationFailure);
    };
    let name = ServerName::try_from(mx.trim_end_matches('.').to_string())
        .map_err(|_| ResultType::CertificateHostMismatch)?;
    v.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| result_type(&e))
}

/// RFC 8460 §4.3.2.1 for a rustls certificate error.
fn result_type(e: &rustls::Error) -> ResultType {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => ResultType::CertificateExpired,
            C::UnknownIssuer => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_rfc8460_result_types() {
        let cert = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(
            result_type(&cert(CertificateError::NotValidForName)),
            ResultType::CertificateHostMismatch
        );
        assert_eq!(
            result_type(&cert(CertificateError::Expired)),
            ResultType::CertificateExpired
        );
        assert_eq!(
            result_type(&cert(CertificateError::UnknownIssuer)),
            ResultType::CertificateNotTrusted
        );
        assert_eq!(
            result_type(&cert(CertificateError::BadSignature)),
            ResultType::ValidationFailure
        );
    }

    #[test]
    fn without_starttls_an_enforced_policy_refuses_and_a_testing_one_does_not() {
        let v = verifier(None);
        let enforce = SessionPolicy::checked(
            "example.com",
            PolicyType::Sts,
            true,
            v.clone(),
            None,
            "MTA-STS policy of example.com (enforce)".into(),
        );
        let e = enforce.check("mx.example.com", None).expect_err("refused");
        assert_eq!(e.result, ResultType::StartTlsNotSupported);
        assert!(e.reason.contains("starttls-not-supported"), "{}", e.reason);
        let testing =
            SessionPolicy::checked("example.com", PolicyType::Sts, false, v, None, "t".into());
        assert_eq!(testing.check("mx.example.com", None), Ok(()));
    }
}
