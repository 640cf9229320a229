//! Outgoing delivery status notifications (RFC 3464, inside an RFC 6522 multipart/report):
//! what the original sender gets when a relayed recipient bounced (5xx) or expired, was
//! delayed, or was relayed to a hop without DSN while the sender asked NOTIFY=SUCCESS.
//!
//! Input: the queued message (its RFC 3461 ENVID becomes `Original-Envelope-Id`), the
//! reported recipient with its last remote reply and ORCPT (`Original-Recipient`), and
//! what is returned of the original: its header section, or all of it (RET=FULL). Output: a complete RFC 5322 message, queued by
//! [`relay`](super::relay) with the null sender (RFC 5321 §4.5.5: a DSN never bounces).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bounce::find_status;
use crate::envelope::esmtp::xtext_decode;
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
    /// Taken by the next hop, NOTIFY=SUCCESS asked: `Action: relayed` (RFC 3461 §5.2.2),
    /// status 2.0.0 — the last report the sender will get (see `Relay::dsn_for`).
    Relayed,
}

/// What the DSN returns of the original (RFC 3461 §4.3 RET).
#[derive(Clone, Copy)]
pub enum Returned<'a> {
    /// The header section of this (whole message or headers): `text/rfc822-headers`.
    Headers(&'a [u8]),
    /// The whole message: `message/rfc822`.
    Full(&'a [u8]),
}

/// One recipient the DSN reports.
pub struct Failure<'a> {
    pub recipient: &'a str,
    /// The last reply (remote SMTP reply line, or mxgate's own reason).
    pub reply: &'a str,
    pub kind: Kind,
    /// RFC 3461 ORCPT as given at RCPT (`addr-type;xtext`).
    pub orcpt: Option<&'a str>,
}

/// The DSN for `failures` of `msg`, addressed to `to`, returning `original` as the sender
/// asked (by default only the header section, RFC 3462 text/rfc822-headers).
pub fn build(
    hostname: &str,
    msg: &QueuedMessage,
    to: &str,
    failures: &[Failure<'_>],
    original: Returned<'_>,
    now: SystemTime,
) -> Vec<u8> {
    let boundary = format!("{}/{hostname}", msg.id);
    let date = rfc5322_date(now);
    let arrival = rfc5322_date(UNIX_EPOCH + Duration::from_millis(msg.received_ms));
    let mut out = String::with_capacity(2048);
    let delayed = failures.iter().all(|f| f.kind == Kind::Delayed);
    let relayed = failures.iter().all(|f| f.kind == Kind::Relayed);
    let (subject, intro) = if delayed {
        (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered yet to the recipients below; delivery\r\n\
             is still being attempted. You do not need to resend it.",
        )
    } else if relayed {
        (
            "Successful Mail Relay Report",
            "Your message was relayed to the mail system of the recipients below. This is\r\n\
             the last delivery report you will get about it.",
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
            Kind::Relayed => "relayed; the next hop said",
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
         \r\n",
    );
    // RFC 3464 §2.2: Original-Envelope-Id first among the per-message fields.
    if let Some(envid) = &msg.esmtp.envid {
        let _ = write!(
            out,
            "Original-Envelope-Id: {}\r\n",
            clean(&xtext_decode(envid))
        );
    }
    let _ = write!(
        out,
        "Reporting-MTA: dns; {hostname}\r\n\
         X-Mxgate-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        id = msg.id,
    );
    for f in failures {
        out.push_str("\r\n");
        if let Some(orcpt) = f.orcpt {
            let _ = write!(
                out,
                "Original-Recipient: {}\r\n",
                clean(&xtext_decode(orcpt))
            );
        }
        let action = match f.kind {
            Kind::Delayed => "delayed",
            Kind::Relayed => "relayed",
            Kind::Failed | Kind::Expired => "failed",
        };
        let _ = write!(
            out,
            "Final-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {}\r\nDiagnostic-Code: smtp; {}\r\n",
            f.recipient,
            status_of(f),
            clean(f.reply)
        );
    }
    let (content_type, returned) = match original {
        Returned::Headers(raw) => ("text/rfc822-headers", header_section(raw)),
        Returned::Full(raw) => ("message/rfc822", raw),
    };
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
    );
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(returned);
    if !returned.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// RFC 3463 status: the one in the reply, else 5.0.0 (4.4.7 expired, 4.0.0 delayed).
fn status_of(f: &Failure<'_>) -> String {
    match (find_status(f.reply), f.kind) {
        (Some(s), Kind::Failed | Kind::Expired | Kind::Delayed) => s.to_string(),
        (None, Kind::Failed) => "5.0.0".into(),
        (None, Kind::Expired) => "4.4.7".into(),
        (None, Kind::Delayed) => "4.0.0".into(),
        // The hop's 250 may carry its own 2.x.y; anything else is no status of ours.
        (Some(s), Kind::Relayed) if s.starts_with('2') => s.to_string(),
        (_, Kind::Relayed) => "2.0.0".into(),
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
            esmtp: Default::default(),
        };
        let f = Failure {
            recipient: "nobody@remote.test",
            reply: "550 5.1.1 <nobody@remote.test>: Recipient address rejected: User unknown",
            kind: Kind::Failed,
            orcpt: None,
        };
        let original = b"From: odoo@example.test\r\nSubject: Invoice\r\n\r\nsecret body\r\n";
        let dsn = build(
            "mx.example.test",
            &msg,
            "odoo@example.test",
            &[f],
            Returned::Headers(original),
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
