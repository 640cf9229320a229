//! `[submission]`, `[relay]`, `[[relay.smarthosts]]`, `[warming]`, `[queue]`.
//! The keys SPEC fixes are all accepted here; the relay issue gives them behaviour.

use ipnet::IpNet;
use serde::Deserialize;

use super::types::{HumanDuration, Secret};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    pub users: Vec<SubmissionUser>,
    /// What happens when an authenticated user's header `From:` is outside its enrolled
    /// domains: `rewrite` (default), `reject` or `off`.
    pub from_alignment: FromAlignment,
}

/// Header `From:` alignment for submitted mail (DMARC aligns on that header, not MAIL FROM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FromAlignment {
    /// Replace the address with the envelope sender, keep the display name, and put the
    /// original address in `Reply-To:` when there is none (what Odoo does itself when its
    /// "From Filter" does not match).
    #[default]
    Rewrite,
    /// `550 5.7.1 Header From not allowed`.
    Reject,
    /// No check.
    Off,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionUser {
    pub name: String,
    /// argon2 PHC string from `mxgate hash-password`.
    pub password_hash: String,
    /// Enrolled sending domains: MAIL FROM outside them is 550 5.1.0.
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub direct_mx: bool,
    /// Like Postfix's mynetworks: may relay without AUTH. Default empty.
    pub trusted_networks: Vec<IpNet>,
    /// Domain of the VERP envelope sender `bounce+TOKEN@<bounce_domain>` and of SRS
    /// addresses of forwarded mail.
    pub bounce_domain: String,
    pub smarthosts: Vec<SmarthostConfig>,
    /// TCP port of MX hosts (25; tests point it at a loopback sink).
    pub mx_port: u16,
    /// TCP connect (and implicit-TLS handshake) deadline per host.
    pub connect_timeout: HumanDuration,
    /// Deadline per SMTP command reply (RFC 5321 §4.5.3.2: 5 minutes; DATA end 10).
    pub command_timeout: HumanDuration,
    /// SMTP transactions in flight at once per destination (smart host, or MX domain).
    pub destination_concurrency: usize,
    /// Idle outbound connections are kept this long for the next message to the same host.
    pub connection_idle: HumanDuration,
    /// Send the sender one "delayed" DSN when a relayed recipient is still deferred this
    /// long after the message arrived (e.g. `"4h"`); unset = no delay warnings.
    pub delay_warning: Option<HumanDuration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            direct_mx: false,
            trusted_networks: Vec::new(),
            bounce_domain: String::new(),
            smarthosts: Vec::new(),
            mx_port: 25,
            connect_timeout: HumanDuration::secs(30),
            command_timeout: HumanDuration::secs(300),
            destination_concurrency: 8,
            connection_idle: HumanDuration::secs(10),
            delay_warning: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmarthostConfig {
    pub name: String,
    pub host: String,
    #[serde(default = "default_submission_port")]
    pub port: u16,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Secret,
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// `"@example.test"`, `"news@example.test"` or empty = all senders.
    #[serde(default)]
    pub from_filter: String,
    /// Verify the host's certificate (webpki roots, name = `host`). `false` accepts any
    /// certificate — only for test rigs and private relays with self-signed certificates.
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

fn yes() -> bool {
    true
}

impl SmarthostConfig {
    /// Whether this host takes mail from envelope/header sender `from` (`local@domain`).
    /// `"@example.test"` (or `"example.test"`) matches the domain, `"news@example.test"`
    /// the address; both case-insensitively. Empty matches everyone.
    pub fn takes_from(&self, from: &str) -> bool {
        let f = self.from_filter.trim();
        if f.is_empty() {
            return true;
        }
        let from = from.to_ascii_lowercase();
        let f = f.to_ascii_lowercase();
        match f.strip_prefix('@') {
            Some(domain) => from.rsplit_once('@').is_some_and(|(_, d)| d == domain),
            None if f.contains('@') => from == f,
            None => from.rsplit_once('@').is_some_and(|(_, d)| d == f),
        }
    }
}

fn default_submission_port() -> u16 {
    587
}
fn default_priority() -> u32 {
    10
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Tls,
    #[default]
    Starttls,
    None,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmingConfig {
    pub schedule: Vec<WarmingStep>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmingStep {
    /// `"1-3"`, `"21+"` or a single day `"7"`.
    pub days: String,
    pub daily_cap: u64,
}

/// Retry policy for every queued recipient (ERP routes now, relay later).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// First retry delay; doubles each attempt, with ±20% jitter.
    pub retry_initial: HumanDuration,
    pub retry_max: HumanDuration,
    /// Give up (state `expired`) after this long in the queue.
    pub expire_after: HumanDuration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_initial: HumanDuration::secs(60),
            retry_max: HumanDuration::secs(3600),
            expire_after: HumanDuration::secs(2 * 86400),
            concurrency: 32,
        }
    }
}
