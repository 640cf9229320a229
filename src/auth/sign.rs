//! Outbound DKIM signing (RFC 6376 §5) with the `[[dkim.keys]]` of the sending domain.
//!
//! Input: the raw message as submitted. Output: `DKIM-Signature:` header fields to prepend
//! (one per configured key of the domain, e.g. an RSA and an Ed25519 key side by side,
//! RFC 8463 §5). Keys are loaded once at start; a missing or broken key file is a start-up
//! error, never a silently unsigned message.

use std::collections::HashMap;

use mail_auth::AuthenticatedMessage;
use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use super::keys::{self, KeyError};
use crate::config::Config;

/// Header fields signed when present — and, when absent, listed anyway so that nobody can
/// add them later without breaking the signature (RFC 6376 §8.15).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// Every configured signing key, by lower-cased domain.
#[derive(Default)]
pub struct Signer {
    by_domain: HashMap<String, Vec<DkimSigner<DkimKey, Done>>>,
}

impl Signer {
    /// Loads every `[[dkim.keys]]` entry's key file.
    pub fn from_config(config: &Config) -> Result<Signer, KeyError> {
        let mut signer = Signer::default();
        for k in &config.dkim.keys {
            let loaded = keys::load(&k.key_path(&config.server.data_dir), k.algorithm)?;
            signer.add(&k.domain, &k.selector, loaded.signing);
        }
        Ok(signer)
    }

    /// Adds a key for `domain` (tests and tools that hold a key in memory).
    pub fn add(&mut self, domain: &str, selector: &str, key: DkimKey) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let s = DkimSigner::from_key(key)
            .domain(domain.clone())
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        self.by_domain.entry(domain).or_default().push(s);
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The configured domain that signs for `domain`: itself, else its closest parent
    /// (relaxed DMARC alignment accepts a parent's signature, RFC 7489 §3.1.1).
    pub fn signing_domain(&self, domain: &str) -> Option<&str> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut d = domain.as_str();
        loop {
            if let Some((k, _)) = self.by_domain.get_key_value(d) {
                return Some(k.as_str());
            }
            d = d.split_once('.')?.1;
            if !d.contains('.') {
                return None;
            }
        }
    }

    /// Signs `raw` with every key of `domain` (or its closest configured parent). `Ok(None)`
    /// when no key covers it; the returned fields are CRLF-terminated, to be prepended.
    pub fn sign(&self, domain: &str, raw: &[u8]) -> Result<Option<String>, SignError> {
        let Some(signers) = self
            .signing_domain(domain)
            .and_then(|d| self.by_domain.get(d))
        else {
            return Ok(None);
        };
        let mut out = String::new();
        for s in signers {
            let sig = s.sign(raw).map_err(|e| SignError::Sign(e.to_string()))?;
            out.push_str(&sig.to_header());
        }
        Ok(Some(out))
    }

    /// Signs for the domain of the message's `From:` (what DMARC aligns against).
    pub fn sign_message(&self, raw: &[u8]) -> Result<Option<String>, SignError> {
        let Some(from) = AuthenticatedMessage::parse(raw).and_then(|m| m.from.into_iter().next())
        else {
            return Ok(None);
        };
        match from.rsplit_once('@') {
            Some((_, domain)) => self.sign(domain, raw),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DkimAlgorithm;

    #[test]
    fn signs_with_the_closest_configured_domain_only() {
        let pem = keys::generate(DkimAlgorithm::Ed25519).expect("keygen");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).expect("write");
        let key = keys::load(&path, DkimAlgorithm::Ed25519).expect("load");
        let mut s = Signer::default();
        s.add("Example.test", "s1", key.signing);
        assert_eq!(s.signing_domain("news.example.test"), Some("example.test"));
        assert_eq!(s.signing_domain("other.test"), None);
        let msg = b"From: a@news.example.test\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let header = s.sign_message(msg).expect("sign").expect("has key");
        assert!(
            header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{header}"
        );
        assert!(
            header.contains("d=example.test") && header.contains("s=s1"),
            "{header}"
        );
        assert!(header.ends_with("\r\n"));
        assert_eq!(s.sign("other.test", msg).expect("no error"), None);
    }
}
