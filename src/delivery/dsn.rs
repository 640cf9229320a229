//! Outgoing delivery status notifications (RFC 3464, inside an RFC 6522 multipart/report):
//! what the original sender gets when a relayed recipient bounced (5xx) or expired.
//!
//! Input: the queued message, the failed recipient with its last remote reply, and the
//! original message's header section. Output: a complete RFC 5322 message, queued by
//! [`relay`](super::relay) with the null sender (RFC 5321 §4.5.5: a DSN never bounces).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bounce::find_status;
use crate::queue::QueuedMessage;

/// What happened to the reported recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Refused (5xx, null MX): `Action: failed`.
    Failed,
    /// Gave up after `queue.expire_after`: `Action: failed`, status 4.4.7 unless known.
    Expired,
    /// Still trying after `relay.delay_warning`: `Action: delayed` (RFC 3464 §2.3.3).
    Delayed,
}

/// One recipient the DSN reports.
pub struct Failure<'a> {
    pub recipient: &'a str,
    /// The last reply (remote SMTP reply line, or mxgate's own reason).
    pub reply: &'a str,
    pub kind: Kind,
}

/// The DSN for `failures` of `msg`, addressed to `to`. `original` is the message as queued
/// (only its header section is returned, RFC 3462 text/rfc822-headers: never the content).
pub fn build(
    hostname: &str,
    msg: &QueuedMessage,
    to: &str,
    failures: &[Failure<'_>],
    original: &[u8],
    now: SystemTime,
) -> Vec<u8> {
    let boundary = format!("{}/{hostname}", msg.id);
    let date = rfc5322_date(now);
    let arrival = rfc5322_date(UNIX_EPOCH + Duration::from_millis(msg.received_ms));
    let mut out = String::with_capacity(2048);
    let delayed = failures.iter().all(|f| f.kind == Kind::Delayed);
    let (subject, intro) = if delayed {
        (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered yet to the recipients below; delivery\r\n\
             is still being attempted. You do not need to resend it.",
        )
    } else {
        (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.",
        )
    };
    let _ = write!(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.dsn.{rand}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         {intro}\r\n\
         \r\n",
        id = msg.id,
        rand = rand::random::<u32>(),
    );
    for f in failures {
        let why = match f.kind {
            Kind::Failed => "the remote server refused it",
            Kind::Expired => "delivery time expired; last error",
            Kind::Delayed => "delayed; last error",
        };
        let _ = write!(
            out,
            "<{}>: {why}:\r\n    {}\r\n",
            f.recipient,
            clean(f.reply)
        );
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         X-Mxgate-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        id = msg.id,
    );
    for f in failures {
        let _ = write!(
            out,
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\nDiagnostic-Code: smtp; {}\r\n",
            f.recipient,
            if f.kind == Kind::Delayed {
                "delayed"
            } else {
                "failed"
            },
            status_of(f),
            clean(f.reply)
        );
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    );
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(header_section(original));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// RFC 3463 status: the one in the reply, else 5.0.0 (4.4.7 expired, 4.0.0 delayed).
fn status_of(f: &Failure<'_>) -> String {
    match (find_status(f.reply), f.kind) {
        (Some(s), _) => s.to_string(),
        (None, Kind::Failed) => "5.0.0".into(),
        (None, Kind::Expired) => "4.4.7".into(),
        (None, Kind::Delayed) => "4.0.0".into(),
    }
}

fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The header section of `raw`, ending with a CRLF (at most 64 KiB of it).
fn header_section(raw: &[u8]) -> &[u8] {
    let head = crate::message::header_section(raw);
    &head[..head.len().min(64 * 1024)]
}

pub fn rfc5322_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t).replace(" GMT", " +0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ListenerKind, QueueId};

    #[test]
    fn dsn_parses_back_as_a_bounce_with_the_remote_reply() {
        let msg = QueuedMessage {
            id: QueueId::generate(),
            received_ms: 0,
            listener: ListenerKind::Submission,
            peer_ip: "127.0.0.1".parse().expect("ip"),
            helo: "erp".into(),
            mail_from: "odoo@example.test".into(),
            size: 10,
            recipients: Vec::new(),
            stream: Default::default(),
        };
        let f = Failure {
            recipient: "nobody@remote.test",
            reply: "550 5.1.1 <nobody@remote.test>: Recipient address rejected: User unknown",
            kind: Kind::Failed,
        };
        let original = b"From: odoo@example.test\r\nSubject: Invoice\r\n\r\nsecret body\r\n";
        let dsn = build(
            "mx.example.test",
            &msg,
            "odoo@example.test",
            &[f],
            original,
            SystemTime::now(),
        );
        let text = String::from_utf8_lossy(&dsn);
        assert!(!text.contains("secret body"), "{text}");
        assert!(text.contains("Subject: Invoice"));
        let report = crate::bounce::parse(&dsn);
        assert!(report.is_bounce, "{report:?}");
        let r = report.first_failed().expect("failed recipient");
        assert_eq!(r.address, "nobody@remote.test");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
    }
}
