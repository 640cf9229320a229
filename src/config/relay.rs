//! `[submission]`, `[relay]`, `[[relay.smarthosts]]`, `[warming]` (`[queue]` is in `queue.rs`).
//! The keys SPEC fixes are all accepted here; the relay issue gives them behaviour.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;

use super::endpoints::{CaFile, HostAddr, SenderFilter};
use super::outbound_tls::{MtaStsConfig, TlsPolicyOverride, TlsRptConfig};
use super::types::{HumanDuration, Secret};
use super::values::{Date, DayRange, HttpUrl, Parsed};
use crate::providers::HostPattern;

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
    /// Messages (MAIL commands) this login may send an hour; beyond: `451 4.7.1` and a
    /// `rate_limited` event, so a stolen ERP password cannot send 100,000 unnoticed.
    /// Absent = no cap.
    #[serde(default)]
    pub max_messages_per_hour: Option<u32>,
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
    /// DANE (RFC 7672) for direct MX: TLSA records of an MX host whose MX and address
    /// records validate (DNSSEC) make STARTTLS mandatory and the certificate checked
    /// against them. Used only while the resolvers give validatable answers
    /// ([`crate::dns::Dnssec::validating`]); `false` = opportunistic TLS everywhere.
    pub dane: bool,
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
    /// MTA-STS (RFC 8461) for direct-MX delivery.
    pub mta_sts: MtaStsConfig,
    /// Per recipient domain (lower case): `"enforce"`, `"testing"` or `"none"`, whatever
    /// the domain publishes.
    pub tls_policy: BTreeMap<String, TlsPolicyOverride>,
    /// TLS-RPT (RFC 8460): daily reports of direct-MX TLS sessions.
    pub tls_rpt: TlsRptConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            direct_mx: false,
            trusted_networks: Vec::new(),
            bounce_domain: String::new(),
            smarthosts: Vec::new(),
            mx_port: 25,
            dane: true,
            connect_timeout: HumanDuration::secs(30),
            command_timeout: HumanDuration::secs(300),
            destination_concurrency: 8,
            connection_idle: HumanDuration::secs(10),
            delay_warning: None,
            mta_sts: MtaStsConfig::default(),
            tls_policy: BTreeMap::new(),
            tls_rpt: TlsRptConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmarthostConfig {
    pub name: String,
    pub host: Parsed<HostAddr>,
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
    #[serde(default = "any_sender")]
    pub from_filter: Parsed<SenderFilter>,
    /// Verify the host's certificate (webpki roots, name = `host`). `false` accepts any
    /// certificate — only for test rigs and private relays with self-signed certificates.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// A private CA (PEM bundle) the host's certificate is also checked against, besides
    /// the webpki roots: a relay with a company CA stays verified (REQUIRETLS mail needs
    /// a verified session, RFC 8689 §4.2.1). Read at config load.
    #[serde(default)]
    pub ca_file: Option<Parsed<CaFile>>,
    /// How mxgate logs in: `password` (AUTH PLAIN/LOGIN with `username`/`password`) or
    /// `xoauth2` (an OAuth2 access token for mailbox `username`, from `token_url`).
    #[serde(default)]
    pub auth: SmarthostAuth,
    /// `auth = "xoauth2"`: the OAuth2 token endpoint (RFC 6749 §3.2), `https://` only.
    #[serde(default)]
    pub token_url: Option<Parsed<HttpUrl>>,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Secret,
    /// Set: the refresh-token grant (a mailbox that consented once, RFC 6749 §6);
    /// empty: the client-credentials grant (the application's own permission, §4.4).
    #[serde(default)]
    pub refresh_token: Secret,
    /// Space-separated scopes asked for; empty = the endpoint's default for the client.
    #[serde(default)]
    pub scope: String,
    /// A private CA the token endpoint's certificate is checked against, besides the
    /// webpki and system roots (`tls_verify` is about the SMTP host, not this).
    #[serde(default)]
    pub token_ca_file: Option<Parsed<CaFile>>,
}

/// A smart host's `auth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostAuth {
    /// `username`/`password` over AUTH PLAIN or LOGIN (none without a `username`).
    #[default]
    #[serde(alias = "plain")]
    Password,
    /// AUTH XOAUTH2 with an access token from `token_url` (Microsoft 365, Google).
    Xoauth2,
}

fn any_sender() -> Parsed<SenderFilter> {
    Parsed::new("")
}

fn yes() -> bool {
    true
}

impl SmarthostConfig {
    /// Whether this host takes mail from envelope/header sender `from` (`local@domain`).
    /// `"@example.test"` (or `"example.test"`) matches the domain, `"news@example.test"`
    /// the address; both case-insensitively. Empty matches everyone.
    pub fn takes_from(&self, from: &str) -> bool {
        self.from_filter.get().is_some_and(|f| f.matches(from))
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

/// `[warming]`: daily caps per sending domain by day-in-warming, hourly caps per mailbox
/// provider, adaptive throttling on rate-limit replies (issue 6). Off unless `enabled`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmingConfig {
    pub enabled: bool,
    /// Answer `451 4.7.1 Warming tier rate limit` at submission once a sending domain's
    /// daily cap is spent (instead of accepting and holding the mail in the queue).
    pub tempfail: bool,
    /// Empty = the default schedule ([`WarmingConfig::steps`]).
    pub schedule: Vec<WarmingStep>,
    /// Warming start per sending domain, `"example.test" = "2026-11-01"` (UTC day 1);
    /// domains without one start on their first relayed message.
    pub start: std::collections::BTreeMap<String, Parsed<Date>>,
    /// After a provider's rate-limit reply halved its hourly cap, each quiet period without
    /// another one doubles it back, up to the configured cap.
    pub throttle_quiet: HumanDuration,
    /// Hourly caps per provider label (`gmail`, `yahoo`, `microsoft`, `aol`, `icloud`,
    /// `google_workspace`, ...); entries override [`default_provider_rates`]. An entry
    /// with `domains` / `mx` may also name a provider of its own (`[warming.providers.orange]`).
    pub providers: std::collections::BTreeMap<String, ProviderRate>,
}

impl Default for WarmingConfig {
    fn default() -> Self {
        WarmingConfig {
            enabled: false,
            tempfail: false,
            schedule: Vec::new(),
            start: Default::default(),
            throttle_quiet: HumanDuration::secs(1800),
            providers: Default::default(),
        }
    }
}

impl WarmingConfig {
    /// The schedule in effect: the configured one, else SPEC's default
    /// (1-3: 1,000, 4-6: 5,000, 7-10: 10,000, 11-14: 25,000, 15-20: 50,000, 21+: full quota).
    pub fn steps(&self) -> Vec<WarmingStep> {
        if !self.schedule.is_empty() {
            return self.schedule.clone();
        }
        [
            ("1-3", Some(1_000)),
            ("4-6", Some(5_000)),
            ("7-10", Some(10_000)),
            ("11-14", Some(25_000)),
            ("15-20", Some(50_000)),
            ("21+", None),
        ]
        .into_iter()
        .map(|(days, daily_cap)| WarmingStep {
            days: Parsed::new(days),
            daily_cap,
        })
        .collect()
    }

    /// Hourly caps per provider label: defaults overridden by `[warming.providers.*]`.
    pub fn provider_rates(&self) -> std::collections::BTreeMap<String, ProviderRate> {
        let mut rates = default_provider_rates();
        for (k, v) in &self.providers {
            let name = k.to_ascii_lowercase();
            let mut v = v.clone();
            // An entry that sets only the hourly rates keeps the built-in daily caps.
            if let Some(built_in) = rates.get(&name) {
                v.new_daily = v.new_daily.or(built_in.new_daily);
                v.warmed_daily = v.warmed_daily.or(built_in.warmed_daily);
            }
            rates.insert(name, v);
        }
        rates
    }
}

/// Issue 6 defaults: (new sender, warmed sender) messages per hour; the daily caps per
/// source IP are [`DAILY_CAPS`](crate::providers::DAILY_CAPS).
pub fn default_provider_rates() -> std::collections::BTreeMap<String, ProviderRate> {
    [
        ("gmail", 500, 5_000),
        ("google_workspace", 500, 5_000),
        ("yahoo", 1_000, 10_000),
        ("microsoft", 500, 3_000),
        ("aol", 500, 5_000),
        ("icloud", 500, 2_000),
    ]
    .into_iter()
    .map(|(p, new_hourly, warmed_hourly)| {
        let daily = crate::providers::DAILY_CAPS
            .iter()
            .find(|(name, _, _)| *name == p);
        (
            p.to_string(),
            ProviderRate {
                new_hourly,
                warmed_hourly,
                new_daily: daily.map(|d| d.1),
                warmed_daily: daily.map(|d| d.2),
                connections: None,
                domains: Vec::new(),
                mx: Vec::new(),
            },
        )
    })
    .collect()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmingStep {
    /// `"1-3"`, `"21+"` or a single day `"7"`.
    pub days: Parsed<DayRange>,
    /// Messages per UTC day; absent = the full quota (no cap).
    #[serde(default)]
    pub daily_cap: Option<u64>,
}

/// `[warming.providers.NAME]`: messages per hour to that provider per sending domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRate {
    /// While the sending domain is in warming (its schedule still caps the day); for a
    /// pool IP's own rate, while that IP or the sending domain is.
    pub new_hourly: u64,
    /// Once the schedule no longer caps the day (full quota).
    pub warmed_hourly: u64,
    /// Messages per UTC day from one source IP to this provider while that IP is in
    /// warming (its schedule still caps its day); absent = the built-in figure of a known
    /// provider, none for another.
    #[serde(default)]
    pub new_daily: Option<u64>,
    /// As `new_daily`, once the IP is warmed.
    #[serde(default)]
    pub warmed_daily: Option<u64>,
    /// SMTP transactions in flight at once to this provider, from all sending domains;
    /// absent = only `relay.destination_concurrency` applies.
    #[serde(default)]
    pub connections: Option<usize>,
    /// Recipient domains of this provider (`"orange.fr"`: that domain and every domain
    /// under it). With `mx`, this is how a provider the built-in table does not know is
    /// defined; for a built-in one, it adds to what is recognised.
    #[serde(default)]
    pub domains: Vec<Parsed<HostPattern>>,
    /// MX host names of this provider (`"*.orange-mx.fr"` or `"orange-mx.fr"`: that host
    /// and every host under it): a company domain whose MX hosts match is this provider.
    #[serde(default)]
    pub mx: Vec<Parsed<HostPattern>>,
}
