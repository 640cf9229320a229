//! Types that cross stages: [`Address`], [`ReversePath`], [`Envelope`], [`QueueId`], [`Peer`],
//! a recipient's [`Destination`] and a message's [`Stream`]; [`esmtp`]: the MAIL/RCPT
//! parameters that travel with a message.
//!
//! Nothing else lives here. A session builds an `Envelope`, routing resolves its recipients
//! to `Destination`s, the queue stores it under a `QueueId`, delivery reads it back.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub mod esmtp;

/// A mailbox `local@domain` as it appeared on the wire (local part verbatim, domain
/// lower-cased and without a trailing dot, as DNS compares it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// Parses `local@domain` (no angle brackets). Returns `None` for anything that is not a
    /// plain, unquoted dot-atom mailbox: quoted local parts, source routes and `%` hacks are
    /// rejected here rather than interpreted, so they can never be relayed.
    pub fn parse(s: &str) -> Option<Address> {
        let (local, domain) = s.rsplit_once('@')?;
        if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
            return None;
        }
        if !local.chars().all(is_atext_or_dot) || local.starts_with('.') || local.ends_with('.') {
            return None;
        }
        if local.contains("..") {
            return None;
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if !is_domain(domain) {
            return None;
        }
        Some(Address {
            local: local.to_string(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    pub fn to_ascii_lowercase(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// RFC 5322 atext, plus UTF-8 for SMTPUTF8 (RFC 6531 §3.3). `%` and `!` are atext but are
/// the classic relay hacks (`user%other@us`, `host!user@us`), so they are refused.
fn is_atext_or_dot(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "#$&'*+-/=?^_`{|}~.".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

fn is_domain(d: &str) -> bool {
    if let Some(lit) = d.strip_prefix('[') {
        // Address literals are never one of our alias domains: callers reject them.
        return lit.ends_with(']');
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control())
            })
    })
}

/// The MAIL FROM reverse-path: `<>` (bounces, RFC 5321 §4.5.5) or an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReversePath {
    Null,
    Address(Address),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Address(a) => a.fmt(f),
        }
    }
}

/// Which SMTP listener a session came in on (SPEC "Listeners").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MX-facing: mail for the alias domains only, STARTTLS offered.
    Inbound,
    /// ERP submission: STARTTLS, then AUTH required.
    Submission,
    /// Submission with implicit TLS.
    Submissions,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Inbound => "inbound",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }
}

/// Who is on the other end of a session.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub helo: Option<String>,
    pub tls: bool,
    /// The authenticated submission user, if any.
    pub user: Option<String>,
}

/// One message transaction as accepted by a session.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub mail_from: ReversePath,
    pub rcpt_to: Vec<Address>,
}

/// Queue identifier: time-ordered so that RocksDB keys (big-endian) sort by arrival.
/// High 52 bits are microseconds since the epoch, low 12 bits a process-wide counter, so two
/// messages in the same microsecond still get distinct ids.
/// Serialized as its 16-hex-digit string: JSON numbers lose precision past 2^53.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct QueueId(pub u64);

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for QueueId {
    type Error = String;
    fn try_from(s: String) -> Result<QueueId, String> {
        s.parse().map_err(|_| format!("{s:?} is not a queue id"))
    }
}

static QUEUE_ID_COUNTER: AtomicU64 = AtomicU64::new(0);

impl QueueId {
    pub fn generate() -> QueueId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let n = QUEUE_ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xfff;
        QueueId((micros << 12) | n)
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: &[u8]) -> Option<QueueId> {
        Some(QueueId(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

impl std::str::FromStr for QueueId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(QueueId)
    }
}

/// Where one accepted recipient goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// A configured route (`http`, `maildir`, ...).
    Route {
        route: String,
        /// The alias address that matched (`sales@example.test`), or the catchall address.
        alias: String,
        /// `reply+TOKEN`: the ERP's thread token, passed on as `X-Mxgate-Thread`.
        thread: Option<String>,
        /// `alias+detail`: the detail part.
        detail: Option<String>,
    },
    /// `bounce+TOKEN@`: a DSN for the bounce stage; TOKEN may be empty or forged.
    Bounce { token: String },
    /// Outbound relay to a remote domain (authenticated submission, a trusted network, a
    /// forwarded copy or a DSN we send): smart hosts or MX, see `delivery::plan`.
    Relay,
    /// `SRS0=...@<bounce domain>` of ours (a bounce of a forwarded copy): relayed on to the
    /// original sender `to` that the SRS address encodes.
    SrsReturn { to: String },
}

/// A message's email type (issue 6 item 5): `transactional` (the default: invoices,
/// password resets, replies) or `mass` (newsletters, campaigns). Mass mail gets its own share
/// of the delivery concurrency so it never delays transactional mail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    #[default]
    Transactional,
    Mass,
}

impl Stream {
    /// The `email_type` label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Transactional => "transactional",
            Stream::Mass => "mass",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        match s.trim().to_ascii_lowercase().as_str() {
            "transactional" => Some(Stream::Transactional),
            "mass" => Some(Stream::Mass),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_address_parses_with_lowercased_domain_and_no_trailing_dot() {
        let a = Address::parse("Sales@Example.TEST.").expect("valid");
        assert_eq!(a.local, "Sales");
        assert_eq!(a.domain, "example.test");
    }

    #[test]
    fn relay_hacks_are_not_addresses() {
        for bad in [
            "user%other.test@example.test",
            "\"user@other\"@example.test",
            "@relay.test:user@example.test",
            "host!user@example.test",
            "user@",
            "@example.test",
            "a..b@example.test",
            "user@exa mple.test",
            "user@-bad.test",
        ] {
            assert!(Address::parse(bad).is_none(), "{bad} must not parse");
        }
    }

    #[test]
    fn queue_ids_are_unique_and_ordered() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert!(b > a);
        assert_eq!(a.to_string().parse::<QueueId>().expect("hex"), a);
        assert_eq!(QueueId::from_bytes(&a.to_bytes()), Some(a));
    }
}
