//! `[submission]`, `[relay]`, `[[relay.smarthosts]]`, `[warming]`, `[queue]`.
//! The keys SPEC fixes are all accepted here; the relay issue gives them behaviour.

use ipnet::IpNet;
use serde::Deserialize;

use super::types::{HumanDuration, Secret};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmissionConfig {
    pub users: Vec<SubmissionUser>,
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

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub direct_mx: bool,
    /// Like Postfix's mynetworks: may relay without AUTH. Default empty.
    pub trusted_networks: Vec<IpNet>,
    /// Domain of the VERP envelope sender `bounce+TOKEN@<bounce_domain>`.
    pub bounce_domain: String,
    pub smarthosts: Vec<SmarthostConfig>,
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
