//! `[rates]`: per-client rates on the inbound listener (issue 16 item 3), Postfix anvil's
//! `smtpd_client_connection_rate_limit` / `_message_rate_limit` / `_recipient_rate_limit`,
//! counted per client IP and per client network (IPv4 /24, IPv6 /64: one spam host
//! rotating through its neighbours' addresses is still one sender). `0` = no limit, the
//! default, as in Postfix. Submission users have their own hourly cap
//! (`[[submission.users]] max_messages_per_hour`).

use serde::Deserialize;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatesConfig {
    /// Per client IP address.
    pub client: RateLimits,
    /// Per client /24 (IPv4) or /64 (IPv6).
    pub network: RateLimits,
}

/// GCRA limits (governor): a burst of N, then one every `1 min / N`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// New connections a minute; beyond: `421 4.7.0` and closed.
    pub connections_per_minute: u32,
    /// MAIL commands a minute; beyond: `451 4.7.1`.
    pub messages_per_minute: u32,
    /// RCPT commands a minute (refused ones too: a dictionary attack is many RCPTs);
    /// beyond: `451 4.7.1`.
    pub recipients_per_minute: u32,
}
