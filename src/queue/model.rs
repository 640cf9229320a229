//! What the queue stores: a message's envelope and metadata, its recipients and each
//! recipient's delivery state. The raw body is stored separately (written once, read by
//! delivery) so state changes never rewrite it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::bounce::Category;
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
