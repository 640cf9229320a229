//! What the queue stores: a message's envelope and metadata, its recipients and each
//! recipient's delivery state. The raw body is stored separately (written once, read by
//! delivery) so state changes never rewrite it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::bounce::Category;
use crate::envelope::esmtp::{MessageParams, RcptParams};
use crate::envelope::{Address, Destination, ListenerKind, QueueId, ReversePath, Stream};

/// A message a session has received and wants stored before it answers 250.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub listener: ListenerKind,
    pub peer_ip: IpAddr,
    pub helo: String,
    pub mail_from: ReversePath,
    pub recipients: Vec<(Address, Destination)>,
    /// The full message as it will be delivered: our Received header (and later
    /// Authentication-Results) prepended, CRLF line ends, dot-unstuffed.
    pub body: Vec<u8>,
}

/// What one delivery attempt for one recipient came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `reply` is what the other side said (`HTTP 200 OK`, an SMTP reply line).
    Sent { reply: String },
    /// Transient failure: retried with backoff until expiry.
    Deferred { reason: String },
    /// Permanent failure.
    Bounced {
        /// SPEC bounce category, when known (remote MTA bounces); `None` for an ERP refusal.
        category: Option<Category>,
        reply: String,
    },
}

impl Outcome {
    /// A transient failure retried on the normal backoff.
    pub fn deferred(reason: impl Into<String>) -> Outcome {
        Outcome::Deferred {
            reason: reason.into(),
        }
    }

    /// `result` label of `mxgate_delivery_attempts_total`.
    pub fn as_label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Bounced { .. } => "failed",
        }
    }
}

/// No attempt at all: a warming cap or a provider rate holds the recipient until its window
/// opens ([`warming`](crate::delivery::warming)). The queue keeps it `deferred` with `reason` until
/// `retry_at` without counting an attempt (so the later 4xx backoff does not grow), and no
/// `deferred` event or `mxgate_delivery_attempts_total` sample is produced for it; expiry
/// still applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub reason: String,
    /// When the window opens (ms since the epoch).
    pub retry_at: u64,
}

/// Stored metadata of a queued message (key `m/<id>`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: QueueId,
    /// Milliseconds since the epoch at which the 250 was given.
    pub received_ms: u64,
    pub listener: ListenerKind,
    pub peer_ip: IpAddr,
    pub helo: String,
    /// Empty for the null sender `<>`.
    pub mail_from: String,
    pub size: u64,
    pub recipients: Vec<Recipient>,
    /// Email type; absent in records written before streams existed (= transactional).
    #[serde(default)]
    pub stream: Stream,
    /// MAIL's SMTPUTF8/BODY/ENVID/RET/REQUIRETLS. Absent in records written before they
    /// were kept, and left out when all are defaults, so such records stay as they were.
    #[serde(default, skip_serializing_if = "MessageParams::is_default")]
    pub esmtp: MessageParams,
}

/// One recipient and where its delivery stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub dest: Destination,
    pub state: RcptState,
    pub attempts: u32,
    /// When the next attempt is due (ms since epoch); meaningful in `queued`/`deferred`.
    pub next_attempt_ms: u64,
    /// The last reply from the remote side (SMTP reply line, or `HTTP 503 ...`).
    pub last_reply: Option<String>,
    /// Bounce category when `bounced` (SPEC category names).
    pub category: Option<String>,
    pub updated_ms: u64,
    /// RCPT's NOTIFY/ORCPT; absent (defaults) in older records, as [`QueuedMessage::esmtp`].
    #[serde(default, skip_serializing_if = "RcptParams::is_default")]
    pub esmtp: RcptParams,
}

/// Per-recipient states, exactly as SPEC "Queue and delivery" names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    Queued,
    Deferred,
    Sent,
    Bounced,
    Expired,
    Cancelled,
    /// Put on hold by an operator (Postfix's hold queue, `postsuper -h`): not delivered and
    /// not expired until released, never purged by retention. Not in SPEC's list of states;
    /// an extension (issue 15 item 7).
    Held,
}

impl RcptState {
    /// In the order of their stored index byte: new states are appended, never inserted.
    pub const ALL: [RcptState; 7] = [
        RcptState::Queued,
        RcptState::Deferred,
        RcptState::Sent,
        RcptState::Bounced,
        RcptState::Expired,
        RcptState::Cancelled,
        RcptState::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Queued => "queued",
            RcptState::Deferred => "deferred",
            RcptState::Sent => "sent",
            RcptState::Bounced => "bounced",
            RcptState::Expired => "expired",
            RcptState::Cancelled => "cancelled",
            RcptState::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<RcptState> {
        RcptState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still waiting for delivery (the scheduler's index holds it).
    pub fn is_pending(self) -> bool {
        matches!(self, RcptState::Queued | RcptState::Deferred)
    }

    /// Done for good: neither pending nor held (retention may purge the message).
    pub fn is_final(self) -> bool {
        !self.is_pending() && self != RcptState::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::esmtp::{BodyType, Notify};

    fn stored() -> QueuedMessage {
        QueuedMessage {
            id: QueueId(7),
            received_ms: 1,
            listener: ListenerKind::Submission,
            peer_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            helo: "erp.test".into(),
            mail_from: "app@example.test".into(),
            size: 3,
            recipients: vec![Recipient {
                address: "bob@remote.test".into(),
                dest: Destination::Relay,
                state: RcptState::Queued,
                attempts: 0,
                next_attempt_ms: 1,
                last_reply: None,
                category: None,
                updated_ms: 1,
                esmtp: RcptParams::default(),
            }],
            stream: Stream::Transactional,
            esmtp: MessageParams::default(),
        }
    }

    #[test]
    fn records_without_parameters_keep_the_earlier_format_and_decode_with_defaults() {
        let json = serde_json::to_string(&stored()).expect("json");
        // What a store written before the parameters existed holds, byte for byte.
        assert!(!json.contains("esmtp"), "{json}");
        let back: QueuedMessage = serde_json::from_str(&json).expect("decode");
        assert!(back.esmtp.is_default() && back.recipients[0].esmtp.is_default());
    }

    #[test]
    fn parameters_survive_the_store_encoding() {
        let mut m = stored();
        m.esmtp.body = BodyType::BinaryMime;
        m.esmtp.requiretls = true;
        m.recipients[0].esmtp.notify = Notify::parse("NEVER");
        m.recipients[0].esmtp.orcpt = Some("rfc822;bob@remote.test".into());
        let back: QueuedMessage =
            serde_json::from_str(&serde_json::to_string(&m).expect("json")).expect("decode");
        assert_eq!(back.esmtp, m.esmtp);
        assert_eq!(back.recipients[0].esmtp, m.recipients[0].esmtp);
    }
}
