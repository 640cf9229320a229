//! `[spam]`: inbound spam filtering (issue 16; SPEC "Names fixed on 2026-12-05"), and the
//! per-domain `[[domains]] spam` mode it is applied with. rspamd does the scoring; mxgate
//! asks it before the 250 and acts on its action. The DNSBLs of `[[spam.dnsbl]]` are in `dnsbl.rs`.

use serde::Deserialize;

use super::types::HumanDuration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamConfig {
    /// rspamd's normal worker (`http://127.0.0.1:11333`); mxgate posts to `<url>/checkv2`.
    /// Empty = no scanning, whatever the domains say.
    pub rspamd_url: String,
    /// The whole scan of one message: connect, upload, rspamd's work, answer. rspamd
    /// answers in milliseconds when well; past this it counts as down (`on_error`).
    pub timeout: HumanDuration,
    /// What a message gets when rspamd is down, slow or answers nonsense.
    pub on_error: SpamOnError,
    /// DNS block/allow lists asked at connect (`[[spam.dnsbl]]`, `dnsbl.rs`).
    pub dnsbl: Vec<super::DnsblConfig>,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            rspamd_url: String::new(),
            timeout: HumanDuration::secs(5),
            on_error: SpamOnError::Accept,
            dnsbl: Vec::new(),
        }
    }
}

/// `spam.on_error`: a filter outage must not stop the mail by default (Postfix's
/// `milter_default_action = accept`); `tempfail` makes senders retry until it is back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpamOnError {
    /// Delivered, tagged `X-Spam-Status: unknown`.
    #[default]
    Accept,
    /// `451 4.7.1`.
    Tempfail,
}

/// `[[domains]] spam`: what rspamd's verdict does for mail to the domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpamMode {
    /// Not scanned.
    Off,
    /// Scanned and delivered with the verdict's headers, never refused for spam.
    Tag,
    /// `reject` → 550, `soft reject`/`greylist` → 451, the rest delivered with the headers.
    #[default]
    Enforce,
}

impl SpamConfig {
    /// Whether messages are scanned at all.
    pub fn enabled(&self) -> bool {
        !self.rspamd_url.trim().is_empty()
    }

    /// Problems as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let url = self.rspamd_url.trim();
        if !url.is_empty() {
            // The shared HTTP client speaks plain HTTP only; rspamd listens on loopback or
            // a private network next to the MX.
            match url.parse::<hyper::Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
                _ => p.push((
                    "spam.rspamd_url",
                    format!("{url:?} is not an http:// URL (https is not supported)"),
                )),
            }
        }
        // Within the client's 10-minute DATA timeout (RFC 5321 §4.5.3.2.6) with room to spare.
        let t = self.timeout.get();
        if t.is_zero() || t > std::time::Duration::from_secs(120) {
            p.push((
                "spam.timeout",
                "must be more than 0s and at most 2m".to_string(),
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_toml(toml, Path::new("x.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_off_five_seconds_and_accept() {
        let c = load("").expect("empty config");
        assert!(!c.spam.enabled());
        assert_eq!(c.spam.timeout.get(), std::time::Duration::from_secs(5));
        assert_eq!(c.spam.on_error, super::SpamOnError::Accept);
    }

    #[test]
    fn bad_values_are_problems_at_their_line() {
        let e = load("[spam]\nrspamd_url = \"https://r.test:11333\"\ntimeout = \"0s\"\n")
            .expect_err("https and 0s");
        assert!(e.contains("x.toml:2: spam.rspamd_url"), "{e}");
        assert!(e.contains("x.toml:3: spam.timeout"), "{e}");
        let e = load("[spam]\non_error = \"drop\"\n").expect_err("unknown on_error");
        assert!(e.contains("x.toml:2"), "{e}");
        let e = load("[[domains]]\nname = \"a.test\"\nspam = \"maybe\"\n").expect_err("mode");
        assert!(e.contains("x.toml:3"), "{e}");
    }
}
