//! A private certificate authority for HTTPS stand-ins: the CA certificate as a PEM file
//! (what an endpoint's `ca_file` names) and server certificates it signs, so the test
//! checks mxgate's real certificate verification, not an "accept anything" shortcut.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::TlsAcceptor;

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), for `ca_file`.
    pub pem_path: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, issuer.pem()).expect("write CA");
        TestCa { issuer, pem_path }
    }

    /// A TLS acceptor whose certificate (for 127.0.0.1 and localhost) this CA signed.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor_for(&["127.0.0.1", "localhost"])
    }

    /// A TLS acceptor whose certificate, signed by this CA, names `names` (host names or
    /// IP addresses).
    pub fn acceptor_for(&self, names: &[&str]) -> TlsAcceptor {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        TlsAcceptor::from(Arc::new(cfg))
    }

    /// The server certificate and key as PEM files in `dir` (for the Python stand-ins).
    pub fn server_pem_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}
