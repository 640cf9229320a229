//! `[events]`: the optional webhook that tells the ERP what became of its mail (not named by
//! SPEC; issue 4 item 7). Empty `url` = no events are kept or sent.

use serde::Deserialize;

use super::endpoints::{CaFile, HttpsTrust, WebhookUrl};
use super::types::{HumanDuration, Secret};
use super::values::Parsed;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `http://` or `https://` URL that receives one JSON event per POST; empty = off.
    pub url: Parsed<WebhookUrl>,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Secret,
    /// PEM file of a private CA for an `https://` receiver (besides webpki and system roots).
    pub ca_file: Option<Parsed<CaFile>>,
    /// `false` accepts any certificate; a warning at every start.
    pub tls_verify: bool,
    /// Adds `X-Mxgate-Signature` (HMAC-SHA256 of the body) to every POST when set.
    pub signing_secret: Secret,
    /// Deadline of one POST; past it the event is retried.
    pub timeout: HumanDuration,
    /// Longest pause between retries while the receiver fails (backoff starts at 1 s).
    pub retry_max: HumanDuration,
    /// Events kept in the durable outbox while the receiver is down; past it the oldest
    /// are dropped (with a warning), so a dead receiver cannot fill the disk.
    pub max_pending: u64,
    /// Also report deliveries to inbound routes (to the ERP itself); by default only relayed
    /// (outbound) recipients produce events.
    pub inbound: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: Parsed::new(""),
            token: Secret::default(),
            ca_file: None,
            tls_verify: true,
            signing_secret: Secret::default(),
            timeout: HumanDuration::secs(10),
            retry_max: HumanDuration::secs(300),
            max_pending: 1_000_000,
            inbound: false,
        }
    }
}

impl EventsConfig {
    pub fn trust(&self) -> HttpsTrust<'_> {
        super::routing::trust(self.ca_file.as_ref(), self.tls_verify)
    }
}
