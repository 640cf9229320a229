//! `[relay.mta_sts]`, `[relay.tls_policy]` and `[relay.tls_rpt]`: how direct-MX delivery
//! learns and applies a recipient domain's TLS policy (MTA-STS, RFC 8461) and reports
//! what its sessions came to (TLS-RPT, RFC 8460). Smart hosts are not concerned: their
//! TLS is `security` and `tls_verify` of `[[relay.smarthosts]]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::endpoints::{CaFile, HttpsTrust};
use super::types::HumanDuration;
use super::values::Parsed;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    /// Look up `_mta-sts.<domain>` and apply published policies; `false` = opportunistic
    /// TLS for every domain not named in `relay.tls_policy`.
    pub enabled: bool,
    /// Deadline of one policy fetch (RFC 8461 §3.3 suggests about a minute).
    pub fetch_timeout: HumanDuration,
    /// TCP port of `https://mta-sts.<domain>/`: 443 (RFC 8461 §3.3); tests point it at a
    /// loopback HTTPS server.
    pub policy_port: u16,
    /// PEM file of a private CA trusted besides the webpki roots, both for the policy host
    /// and for MX certificates under a policy (test rigs, private networks).
    pub ca_file: Option<Parsed<CaFile>>,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            enabled: true,
            fetch_timeout: HumanDuration::secs(60),
            policy_port: 443,
            ca_file: None,
        }
    }
}

impl MtaStsConfig {
    /// Trust for the policy fetch: webpki + system roots + `ca_file`, always verified.
    pub fn trust(&self) -> HttpsTrust<'_> {
        super::routing::trust(self.ca_file.as_ref(), true)
    }
}

/// A domain's entry in `[relay.tls_policy]`: what mxgate does whatever the domain publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicyOverride {
    /// Ignore MTA-STS for this domain: opportunistic STARTTLS, certificate not checked.
    None,
    /// Follow the published policy, but never refuse: failures are only reported.
    Testing,
    /// Verified TLS to MX hosts whose certificate names them, even when the domain
    /// publishes no policy (its `mx` patterns still apply when it does); else deferred.
    Enforce,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsRptConfig {
    /// Count direct-MX TLS sessions per recipient domain and send the daily aggregate to
    /// the `rua` of domains that publish `_smtp._tls` (RFC 8460).
    pub enabled: bool,
    /// How often finished days are looked for and reported (a day is reported once).
    pub check_interval: HumanDuration,
    /// `organization-name` of the reports; empty = `server.hostname`.
    pub organization: String,
    /// `contact-info` of the reports; empty = `postmaster@<server.hostname>`.
    pub contact: String,
}

impl Default for TlsRptConfig {
    fn default() -> Self {
        TlsRptConfig {
            enabled: true,
            check_interval: HumanDuration::secs(300),
            organization: String::new(),
            contact: String::new(),
        }
    }
}

/// The problems of these sections, at their keys.
pub fn problems(
    sts: &MtaStsConfig,
    overrides: &BTreeMap<String, TlsPolicyOverride>,
    rpt: &TlsRptConfig,
) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if let Some(e) = sts.ca_file.as_ref().and_then(|c| c.error()) {
        p.push(("relay.mta_sts.ca_file".to_string(), e.to_string()));
    }
    if sts.policy_port == 0 {
        p.push(("relay.mta_sts.policy_port".into(), "must not be 0".into()));
    }
    if sts.fetch_timeout.get().is_zero() {
        p.push(("relay.mta_sts.fetch_timeout".into(), "must not be 0".into()));
    }
    if rpt.check_interval.get().is_zero() {
        p.push((
            "relay.tls_rpt.check_interval".into(),
            "must not be 0".into(),
        ));
    }
    for domain in overrides.keys() {
        let valid =
            !domain.is_empty() && !domain.contains('@') && domain.split('.').all(|l| !l.is_empty());
        if !valid {
            p.push((
                format!("relay.tls_policy.{domain}"),
                "must be a domain name".into(),
            ));
        }
    }
    p
}

/// Warnings (not errors) of these sections: RFC 8460 §3 wants mailed reports DKIM-signed
/// by the reporting domain, and without a key for `server.hostname` (or a parent) the
/// `mailto:` ruas are skipped, `https:` ones still served.
pub fn warnings(config: &super::Config) -> Vec<(String, String)> {
    let mut w = Vec::new();
    let hostname = &config.server.hostname;
    if config.relay.tls_rpt.enabled && config.dkim.signing_domain(hostname).is_none() {
        w.push((
            "relay.tls_rpt".to_string(),
            format!(
                "no [[dkim.keys]] entry for {hostname} (server.hostname) or a parent domain: \
                 TLS-RPT reports are not sent to mailto: ruas (RFC 8460 §3 requires them \
                 DKIM-signed), only to https: ones"
            ),
        ));
    }
    w
}
