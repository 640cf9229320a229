//! [`DaneVerifier`]: the rustls certificate check of a DANE-authenticated session
//! (RFC 7672 §3.1, RFC 6698 §2.1).
//!
//! - DANE-EE(3): the server's leaf certificate (selector 0) or its public key (selector 1)
//!   matches; nothing else is checked — no name, no expiry, no chain (§3.1.1).
//! - DANE-TA(2): a certificate the server sent in its chain matches, and the leaf chains to
//!   it (signatures and validity, webpki) and carries one of the reference identifiers,
//!   the MX host name or the recipient domain (§3.2.2, §3.2.3).
//!
//! Handshake signatures are checked as always, so the session is bound to the key that
//! matched.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256, Sha512};
use tokio_rustls::TlsConnector;

use crate::dns::Tlsa;

const DANE_TA: u8 = 2;
const DANE_EE: u8 = 3;

/// Checks the server's certificate against usable TLSA records (see the module doc).
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

/// A client connector whose certificate check is `records` (reference identifiers `names`).
pub fn connector(records: Vec<Tlsa>, names: Vec<String>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = DaneVerifier::new(records, &names, provider.clone());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

impl DaneVerifier {
    pub fn new(records: Vec<Tlsa>, names: &[String], provider: Arc<CryptoProvider>) -> Self {
        let names = names
            .iter()
            .filter_map(|n| ServerName::try_from(n.clone()).ok())
            .collect();
        DaneVerifier {
            records,
            names,
            provider,
        }
    }

    /// DANE-TA: a chain certificate matches a record, the leaf chains to it and carries a
    /// reference identifier. The error says what failed for the first TA found.
    fn trust_anchor_ok(
        &self,
        leaf: &ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<bool, String> {
        let tas = self.records.iter().filter(|r| r.usage == DANE_TA);
        let mut first_err = None;
        for ta in intermediates
            .iter()
            .filter(|c| tas.clone().any(|r| matches(r, c)))
        {
            let mut roots = RootCertStore::empty();
            if roots.add(ta.clone().into_owned()).is_err() {
                continue;
            }
            let chained = verify_server_cert_signed_by_trust_anchor(
                leaf,
                &roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            );
            let result = chained.map_err(|e| e.to_string()).and_then(|()| {
                self.names
                    .iter()
                    .any(|n| verify_server_name(leaf, n).is_ok())
                    .then_some(())
                    .ok_or_else(|| {
                        "the certificate names neither the MX host nor the domain".into()
                    })
            });
            match result {
                Ok(()) => return Ok(true),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(false), Err)
    }
}

/// Whether `cert` matches `record`'s selector, matching type and data (RFC 6698 §2.1).
fn matches(record: &Tlsa, cert: &CertificateDer<'_>) -> bool {
    let selected: Vec<u8> = match record.selector {
        0 => cert.as_ref().to_vec(),
        1 => match ParsedCertificate::try_from(cert) {
            Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
            Err(_) => return false,
        },
        _ => return false,
    };
    match record.matching {
        0 => selected == record.data,
        1 => Sha256::digest(&selected).as_slice() == record.data.as_slice(),
        2 => Sha512::digest(&selected).as_slice() == record.data.as_slice(),
        _ => false,
    }
}

fn rejected(reason: String) -> rustls::Error {
    rustls::Error::General(format!("DANE: {reason}"))
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .records
            .iter()
            .any(|r| r.usage == DANE_EE && matches(r, end_entity))
        {
            return Ok(ServerCertVerified::assertion());
        }
        let leaf = ParsedCertificate::try_from(end_entity)
            .map_err(|e| rejected(format!("unparseable server certificate: {e}")))?;
        match self.trust_anchor_ok(&leaf, intermediates, now) {
            Ok(true) => Ok(ServerCertVerified::assertion()),
            Ok(false) => Err(rejected(
                "no TLSA record matches the server's certificate chain".into(),
            )),
            Err(e) => Err(rejected(format!("TLSA trust anchor matched, but {e}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::PublicKeyData;

    /// A self-signed certificate for `name`, and its key's SubjectPublicKeyInfo (as rcgen
    /// encodes it: independent of the parsing under test).
    fn self_signed(name: &str) -> (CertificateDer<'static>, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        (
            ck.cert.der().clone(),
            ck.signing_key.subject_public_key_info(),
        )
    }

    fn record(usage: u8, selector: u8, matching: u8, cert: &(CertificateDer<'_>, Vec<u8>)) -> Tlsa {
        let selected = match selector {
            0 => cert.0.as_ref().to_vec(),
            _ => cert.1.clone(),
        };
        let data = match matching {
            0 => selected,
            1 => Sha256::digest(&selected).to_vec(),
            _ => Sha512::digest(&selected).to_vec(),
        };
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn verifier(records: Vec<Tlsa>) -> DaneVerifier {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        DaneVerifier::new(records, &["mx.example.test".into()], provider)
    }

    fn check(v: &DaneVerifier, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("mx.example.test").expect("name");
        v.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn dane_ee_matches_the_leaf_by_every_selector_and_matching_type() {
        // The certificate names another host: DANE-EE checks no name.
        let cert = self_signed("elsewhere.test");
        for selector in [0, 1] {
            for matching in [0, 1, 2] {
                let v = verifier(vec![record(DANE_EE, selector, matching, &cert)]);
                assert!(check(&v, &cert.0).is_ok(), "3 {selector} {matching}");
            }
        }
    }

    #[test]
    fn another_certificate_does_not_match() {
        let published = self_signed("mx.example.test");
        let presented = self_signed("mx.example.test");
        let v = verifier(vec![record(DANE_EE, 1, 1, &published)]);
        let err = check(&v, &presented.0).expect_err("other key");
        assert!(err.to_string().contains("no TLSA record matches"), "{err}");
    }
}
