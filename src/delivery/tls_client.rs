//! TLS for outbound SMTP: a rustls client config that verifies certificates against the
//! webpki roots (smart hosts, by default), or one that accepts any certificate while still
//! checking handshake signatures (opportunistic STARTTLS to MX hosts, and smart hosts with
//! `tls_verify = false`, e.g. a private relay with a self-signed certificate).

use std::sync::Arc;

use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use crate::config::CaFile;
use crate::tls::AnyCert;

/// A rustls client config: webpki roots, or (tls_verify = false) any certificate.
pub fn connector(verify: bool) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    let config = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert::new(provider)))
            .with_no_client_auth()
    };
    TlsConnector::from(Arc::new(config))
}

/// A verifying client config whose roots are the webpki ones plus `ca`'s certificates (a
/// smart host's `ca_file`). Certificates of the file that are no CA are skipped, logged.
pub fn connector_with_ca(ca: &CaFile) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (_, bad) = roots.add_parsable_certificates(ca.certs.iter().cloned());
    if bad > 0 {
        tracing::warn!(ca_file = %ca.path, bad, "ca_file: certificates that are no CA were skipped");
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}
