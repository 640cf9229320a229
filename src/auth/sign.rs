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
        let d = crate::config::covering_domain(domain, |d| self.by_domain.contains_key(d))?;
        self.by_domain.get_key_value(&d).map(|(k, _)| k.as_str())
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
    use crate::auth::AuthResult;
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

    /// A verifier whose DNS answers only from its cache, holding `records` (name → TXT).
    fn cached_verifier(records: &[(&str, &str)]) -> crate::auth::Verifier {
        use mail_auth::ResolverCache;
        use mail_auth::common::parse::TxtRecordParser;
        let mut config = Config::default();
        config.auth = crate::config::AuthConfig {
            dkim: true,
            ..crate::config::AuthConfig::none()
        };
        // Nothing listens on the discard port: a cache miss would be a temperror.
        config.dns.nameservers = vec!["127.0.0.1:9".parse().expect("addr")];
        let dns = crate::dns::Dns::from_config(&config.dns).expect("resolver");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        for (name, txt) in records {
            let key =
                mail_auth::common::verify::DomainKey::parse(txt.as_bytes()).expect("key record");
            dns.caches()
                .txt
                .insert(format!("{name}.").into(), key.into(), until);
        }
        crate::auth::Verifier::new(&config, dns, crate::metrics::Metrics::new())
    }

    async fn dkim_of(v: &crate::auth::Verifier, raw: &[u8]) -> Vec<crate::auth::DkimCheck> {
        let from = crate::envelope::ReversePath::Null;
        let ip = std::net::IpAddr::from([192, 0, 2, 1]);
        v.verify(ip, "client.test", &from, raw).await.dkim
    }

    #[tokio::test]
    async fn both_algorithms_sign_what_the_verifier_accepts_and_tampering_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (alg, sel) in [(DkimAlgorithm::Rsa, "r1"), (DkimAlgorithm::Ed25519, "e1")] {
            let key = keys::generate_to(&dir.path().join(sel), alg).expect("keygen");
            let record = key.dns_record();
            let mut s = Signer::default();
            s.add("example.test", sel, key.signing);
            let msg = b"From: ERP <erp@example.test>\r\nTo: c@client.test\r\nSubject: Invoice\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\nTotal: 10 EUR\r\n";
            let header = s.sign_message(msg).expect("sign").expect("key");
            let signed = [header.as_bytes(), msg].concat();
            let v = cached_verifier(&[(&format!("{sel}._domainkey.example.test"), &record)]);

            let checks = dkim_of(&v, &signed).await;
            assert_eq!(checks.len(), 1, "{checks:?}");
            assert_eq!(checks[0].result, AuthResult::Pass, "{alg:?}: {checks:?}");
            assert_eq!(
                (checks[0].domain.as_str(), checks[0].selector.as_str()),
                ("example.test", sel)
            );

            let body_changed = String::from_utf8_lossy(&signed).replace("10 EUR", "99 EUR");
            let checks = dkim_of(&v, body_changed.as_bytes()).await;
            assert_eq!(checks[0].result, AuthResult::Fail, "{alg:?}: {checks:?}");
            assert!(
                checks[0]
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("body hash"))
            );

            let subject_changed = String::from_utf8_lossy(&signed).replace("Invoice", "Invoyce");
            let checks = dkim_of(&v, subject_changed.as_bytes()).await;
            assert_eq!(checks[0].result, AuthResult::Fail, "{alg:?}: {checks:?}");
        }
    }
}
