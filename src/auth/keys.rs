//! DKIM private keys: generate (`mxgate dkim keygen`), load (signer, `dns-check`), and
//! the public `v=DKIM1` TXT record that goes with them.
//!
//! Files are PEM: PKCS#8 for both algorithms (what keygen writes and `openssl genpkey`
//! makes), PKCS#1 (`BEGIN RSA PRIVATE KEY`) also accepted for RSA. RSA records publish the
//! SubjectPublicKeyInfo (RFC 6376 §3.6.1); Ed25519 records the raw 32-byte key (RFC 8463 §4).

use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::config::DkimAlgorithm;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read DKIM key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write DKIM key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DKIM key {path} already exists (remove it first to replace the key)")]
    Exists { path: PathBuf },
    #[error("DKIM key {path} is not a PEM private key: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("DKIM key {path} is not a usable {algorithm} key: {reason}")]
    Key {
        path: PathBuf,
        algorithm: &'static str,
        reason: String,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A usable signing key and its public half.
pub struct LoadedKey {
    pub algorithm: DkimAlgorithm,
    pub signing: DkimKey,
    /// What the `p=` tag carries (SPKI DER for RSA, raw 32 bytes for Ed25519).
    pub public: Vec<u8>,
}

impl LoadedKey {
    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        dns_record(self.algorithm, &self.public)
    }
}

/// `v=DKIM1; k=rsa; p=<base64>`.
pub fn dns_record(algorithm: DkimAlgorithm, public: &[u8]) -> String {
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    format!("v=DKIM1; k={}; p={p}", algorithm.key_type())
}

/// Reads and parses the key at `path`.
pub fn load(path: &Path, algorithm: DkimAlgorithm) -> Result<LoadedKey, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&pem, algorithm).map_err(|e| match e {
        ParseError::Pem(reason) => KeyError::Pem {
            path: path.to_path_buf(),
            reason,
        },
        ParseError::Key(reason) => KeyError::Key {
            path: path.to_path_buf(),
            algorithm: algorithm.key_type(),
            reason,
        },
    })
}

enum ParseError {
    Pem(String),
    Key(String),
}

fn parse(pem: &[u8], algorithm: DkimAlgorithm) -> Result<LoadedKey, ParseError> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| ParseError::Pem(e.to_string()))?;
    match (algorithm, der) {
        (DkimAlgorithm::Rsa, der) => {
            let key =
                RsaKey::<Sha256>::from_key_der(der).map_err(|e| ParseError::Key(e.to_string()))?;
            let public = rsa_spki(&key.public_key());
            Ok(LoadedKey {
                algorithm,
                signing: DkimKey::Rsa(key),
                public,
            })
        }
        (DkimAlgorithm::Ed25519, PrivateKeyDer::Pkcs8(der)) => {
            // "maybe_unchecked": also accept PKCS#8 v1 (no embedded public key), which is
            // what `openssl genpkey -algorithm ed25519` writes.
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der())
                .map_err(|e| ParseError::Key(e.to_string()))?;
            let public = key.public_key();
            Ok(LoadedKey {
                algorithm,
                signing: DkimKey::Ed25519(key),
                public,
            })
        }
        (DkimAlgorithm::Ed25519, _) => Err(ParseError::Key("Ed25519 keys must be PKCS#8".into())),
    }
}

/// A fresh private key as PKCS#8 PEM (RSA 2048, RFC 8301 §3.2's minimum 1024 doubled).
pub fn generate(algorithm: DkimAlgorithm) -> Result<String, KeyError> {
    let alg = match algorithm {
        DkimAlgorithm::Rsa => &rcgen::PKCS_RSA_SHA256,
        DkimAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let kp = rcgen::KeyPair::generate_for(alg).map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(kp.serialize_pem())
}

/// Generates a key and writes it to `path` (mode 0600, parent directories created),
/// refusing to replace an existing file: a published selector must keep its key.
pub fn generate_to(path: &Path, algorithm: DkimAlgorithm) -> Result<LoadedKey, KeyError> {
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_path_buf(),
        });
    }
    let pem = generate(algorithm)?;
    let werr = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    write_private(path, pem.as_bytes()).map_err(werr)?;
    load(path, algorithm)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (rsaEncryption, NULL params).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const ALG_ID: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALG_ID.to_vec();
    der_push(&mut inner, 0x03, &bit_string);
    let mut out = Vec::with_capacity(inner.len() + 4);
    der_push(&mut out, 0x30, &inner);
    out
}

fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_publish_the_right_key_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ed =
            generate_to(&dir.path().join("d/ed.key"), DkimAlgorithm::Ed25519).expect("ed25519");
        assert_eq!(ed.public.len(), 32);
        assert!(ed.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
        let rsa = generate_to(&dir.path().join("rsa.key"), DkimAlgorithm::Rsa).expect("rsa");
        // SPKI of a 2048-bit key is 294 bytes; rcgen's own SPKI must match our wrapping.
        assert_eq!(rsa.public.len(), 294);
        let pem = std::fs::read_to_string(dir.path().join("rsa.key")).expect("read");
        let kp = rcgen::KeyPair::from_pem(&pem).expect("pem");
        assert_eq!(
            rcgen::PublicKeyData::subject_public_key_info(&kp),
            rsa.public
        );
        assert!(matches!(
            generate_to(&dir.path().join("rsa.key"), DkimAlgorithm::Rsa),
            Err(KeyError::Exists { .. })
        ));
    }

    #[test]
    fn garbage_is_a_pem_error_not_a_panic() {
        assert!(matches!(
            parse(b"nope", DkimAlgorithm::Rsa),
            Err(ParseError::Pem(_))
        ));
    }
}
