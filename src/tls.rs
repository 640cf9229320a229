//! TLS for the listeners: load the configured PEM certificate and key, or create a
//! self-signed pair for `server.hostname` on first start when they are missing (so the
//! default config runs as is). Built once in `server.rs`, shared by every listener. Also
//! [`AnyCert`], the verifier of client connections told not to check certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no usable PEM {what} in file ({detail})")]
    Pem {
        path: String,
        what: &'static str,
        detail: String,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not form a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads (or first creates) the certificate and returns the acceptor for STARTTLS and 465.
pub fn acceptor(config: &TlsConfig, hostname: &str) -> Result<TlsAcceptor, Error> {
    if !config.cert.exists() && !config.key.exists() {
        create_self_signed(&config.cert, &config.key, hostname)?;
        tracing::info!(cert = %config.cert.display(), "created a self-signed certificate");
    }
    let certs = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Pem {
            path: config.cert.display().to_string(),
            what: "certificate",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: config.cert.display().to_string(),
            what: "certificate",
            detail: "file holds no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| Error::Pem {
        path: config.key.display().to_string(),
        what: "private key",
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn create_self_signed(cert: &Path, key: &Path, hostname: &str) -> Result<(), Error> {
    let ck = rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".into()])?;
    for (path, pem) in [(cert, ck.cert.pem()), (key, ck.signing_key.serialize_pem())] {
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, &pem)
        };
        write(path).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| Error::Write {
                path: key.display().to_string(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Accepts any certificate but still checks the handshake signatures (so the session is
/// encrypted to whoever holds the key): opportunistic TLS and `tls_verify = false` (outbound
/// SMTP and HTTPS to the ERP).
#[derive(Debug)]
pub struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl AnyCert {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> AnyCert {
        AnyCert(provider)
    }
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_certificate_is_created_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = TlsConfig {
            cert: dir.path().join("c/mx.crt"),
            key: dir.path().join("c/mx.key"),
        };
        acceptor(&cfg, "mx.example.test").expect("created");
        let first = std::fs::read(&cfg.cert).expect("cert written");
        acceptor(&cfg, "mx.example.test").expect("reused");
        assert_eq!(std::fs::read(&cfg.cert).expect("cert"), first);
    }

    #[test]
    fn garbage_certificate_is_a_precise_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = TlsConfig {
            cert: dir.path().join("mx.crt"),
            key: dir.path().join("mx.key"),
        };
        std::fs::write(&cfg.cert, "not pem").expect("write");
        std::fs::write(&cfg.key, "not pem").expect("write");
        let Err(e) = acceptor(&cfg, "mx.example.test") else {
            panic!("garbage certificate accepted")
        };
        assert!(e.to_string().contains("mx.crt"), "{e}");
    }
}
