//! What the queue stores: a message's envelope and metadata, its recipients and each
//! recipient's delivery state. The raw body is stored separately (written once, read by
//! delivery) so state changes never rewrite it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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
}

impl RcptState {
    pub const ALL: [RcptState; 6] = [
        RcptState::Queued,
        RcptState::Deferred,
        RcptState::Sent,
        RcptState::Bounced,
        RcptState::Expired,
        RcptState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Queued => "queued",
            RcptState::Deferred => "deferred",
            RcptState::Sent => "sent",
            RcptState::Bounced => "bounced",
            RcptState::Expired => "expired",
            RcptState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RcptState> {
        RcptState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still waiting for delivery (the scheduler's index holds it).
    pub fn is_pending(self) -> bool {
        matches!(self, RcptState::Queued | RcptState::Deferred)
    }
}
