//! `[auth]` (which inbound checks run) and `[dkim]` (outbound signing keys).
//!
//! Per-domain policy (DMARC enforcement, SPF `-all` rejection, what a DNS temperror does)
//! lives on `[[domains]]` ([`super::DomainConfig`]); this section only switches methods on
//! and bounds the time one message may spend in verification.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::types::HumanDuration;

/// `[auth]`: the inbound verification methods. All on by default, as a careful MX runs them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// RFC 7208 for HELO and MAIL FROM.
    pub spf: bool,
    /// RFC 6376, every signature.
    pub dkim: bool,
    /// RFC 7489 (needs spf and dkim for alignment; with both off it can only fail).
    pub dmarc: bool,
    /// RFC 8617 chain verification (reported, never enforced).
    pub arc: bool,
    /// RFC 8601 §2.7.3 reverse-then-forward DNS of the client IP (reported, never enforced).
    pub iprev: bool,
    /// Bound on all checks for one message; past it every unfinished method is temperror.
    pub timeout: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            spf: true,
            dkim: true,
            dmarc: true,
            arc: true,
            iprev: true,
            timeout: HumanDuration::secs(20),
        }
    }
}

impl AuthConfig {
    /// Every method off: the "checks off" baseline (benchmarks, trusted test setups).
    pub fn none() -> AuthConfig {
        AuthConfig {
            spf: false,
            dkim: false,
            dmarc: false,
            arc: false,
            iprev: false,
            ..AuthConfig::default()
        }
    }
}

/// `[dkim]`: keys outbound mail is signed with.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    pub keys: Vec<DkimKeyConfig>,
}

/// One `[[dkim.keys]]` entry: mail whose From domain is `domain` is signed with this key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    pub domain: String,
    /// The `s=` tag; the public key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `rsa` (rsa-sha256) or `ed25519` (ed25519-sha256, RFC 8463).
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 (or PKCS#1 for RSA) PEM private key. Default:
    /// `<server.data_dir>/dkim/<domain>.<selector>.key`, where `mxgate dkim keygen` writes it.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl DkimConfig {
    /// The configured key domain that signs for `domain`: itself, else its closest parent
    /// (relaxed DMARC alignment accepts a parent's signature, RFC 7489 §3.1.1).
    pub fn signing_domain(&self, domain: &str) -> Option<String> {
        covering_domain(domain, |d| {
            self.keys
                .iter()
                .any(|k| k.domain.trim_end_matches('.').eq_ignore_ascii_case(d))
        })
    }
}

/// `domain` (lower-cased, no trailing dot) or its closest parent for which `has` holds;
/// never a top-level domain.
pub fn covering_domain(domain: &str, has: impl Fn(&str) -> bool) -> Option<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut d = domain.as_str();
    loop {
        if has(d) {
            return Some(d.to_string());
        }
        d = d.split_once('.')?.1;
        if !d.contains('.') {
            return None;
        }
    }
}

impl DkimKeyConfig {
    /// The key file this entry refers to (explicit or the keygen default).
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| default_key_path(data_dir, &self.domain, &self.selector))
    }
}

/// Where `mxgate dkim keygen` writes a key when no path is given.
pub fn default_key_path(data_dir: &Path, domain: &str, selector: &str) -> PathBuf {
    data_dir
        .join("dkim")
        .join(format!("{}.{}.key", domain.to_ascii_lowercase(), selector))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    #[default]
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    /// The `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// What an alias domain does when verification hit a DNS temperror that matters for it
/// (DMARC with enforcement on, or SPF with `spf_reject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempErrorAction {
    /// `451 4.7.5`: the sender retries, by then DNS answers (RFC 7489 §6.6.3 allows it).
    #[default]
    Tempfail,
    /// Accept and only record `temperror` in the Authentication-Results header.
    Accept,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_default_path_is_under_the_data_dir() {
        let k = DkimKeyConfig {
            domain: "Example.TEST".into(),
            selector: "s1".into(),
            algorithm: DkimAlgorithm::Ed25519,
            key_file: None,
        };
        assert_eq!(
            k.key_path(Path::new("data")),
            Path::new("data/dkim/example.test.s1.key")
        );
    }
}
