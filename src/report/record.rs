//! The record of one outcome, the only thing [`Observer::report`](super::Observer::report)
//! takes: built once where the outcome happens — a delivery lane after the queue recorded an
//! attempt, the bounce intake after a DSN or a complaint came back — and then read, never
//! re-derived, by counting, statistics, events, suppression and suspension.
//!
//! A remote reply is classified once, where it is first understood (delivery's
//! [`outcome::classify`](crate::delivery) for a synchronous refusal, [`bounce::parse`](crate::bounce::parse)
//! for a DSN); the record carries that typed [`Category`], so report reads the reply only
//! for its codes.

use std::net::IpAddr;

use crate::bounce::{BounceReport, Category, DeliveryKind, RecipientResult, ReportKind};
use crate::envelope::{Destination, QueueId};
use crate::queue::{Outcome, QueuedMessage, RcptState, Recipient};

use super::MessageInfo;

/// One outcome for report.
pub enum Record<'a> {
    /// The queue recorded an attempt for a recipient (or a held one expired).
    Attempt(Attempt<'a>),
    /// A DSN or a spam complaint came back to the bounce address, parsed and classified.
    Returned(Returned<'a>),
}

/// An attempt the queue recorded.
pub struct Attempt<'a> {
    pub msg: &'a QueuedMessage,
    /// The recipient as loaded before the attempt.
    pub rcpt: &'a Recipient,
    pub info: &'a MessageInfo,
    /// The recipient's new state, as the queue recorded it.
    pub state: RcptState,
    /// The remote's words (or the deferral reason).
    pub reply: String,
    /// The category delivery classified a refusal under (relayed bounces always have one).
    pub category: Option<Category>,
    /// The local IP the attempt left from, when it left over SMTP.
    pub sending_ip: Option<IpAddr>,
    /// Attempts made, this one included.
    pub attempts: u32,
}

impl<'a> Attempt<'a> {
    /// `outcome` of an attempt for `rcpt` (as it was before) of `msg`, recorded as `state`.
    pub fn recorded(
        msg: &'a QueuedMessage,
        rcpt: &'a Recipient,
        info: &'a MessageInfo,
        outcome: &Outcome,
        state: RcptState,
        sending_ip: Option<IpAddr>,
    ) -> Attempt<'a> {
        let (reply, category) = match outcome {
            Outcome::Sent { reply } => (reply.clone(), None),
            Outcome::Deferred { reason, .. } => (reason.clone(), None),
            Outcome::Bounced { category, reply } => (reply.clone(), *category),
        };
        Attempt {
            msg,
            rcpt,
            info,
            state,
            reply,
            category,
            sending_ip,
            attempts: rcpt.attempts.saturating_add(1),
        }
    }

    /// A recipient held by warming (no attempt made) expired: reported like an expiry after
    /// attempts, with the attempt count the queue kept.
    pub fn held_expired(
        msg: &'a QueuedMessage,
        rcpt: &'a Recipient,
        info: &'a MessageInfo,
        reason: &str,
    ) -> Attempt<'a> {
        Attempt {
            msg,
            rcpt,
            info,
            state: RcptState::Expired,
            reply: reason.to_owned(),
            category: None,
            sending_ip: None,
            attempts: rcpt.attempts,
        }
    }

    /// Relayed to a remote MTA (counted), not handed to an ERP route.
    pub fn outbound(&self) -> bool {
        matches!(self.rcpt.dest, Destination::Relay)
    }
}

/// A report that came back to the bounce address (`bounce+TOKEN@` or plain `bounce@`).
pub struct Returned<'a> {
    /// The stored DSN or complaint.
    pub dsn: QueueId,
    pub report: &'a BounceReport,
    /// What a DSN says failed; `None` for a complaint or a notice that is no bounce.
    pub failure: Option<Failure<'a>>,
    /// The original recipients its valid tokens name; empty for a forged or foreign one.
    pub origins: &'a [Origin],
}

/// The failed recipient a DSN reports (its first), in the words recorded with it.
pub struct Failure<'a> {
    /// As parsed and classified by [`bounce::parse`](crate::bounce::parse).
    pub result: &'a RecipientResult,
    /// `code status diagnostic`, what the queue records as the recipient's last reply.
    pub reply: String,
}

impl<'a> Failure<'a> {
    /// The failure `report` gives when it is a DSN (not a complaint) that is a bounce.
    pub fn of(report: &'a BounceReport) -> Option<Failure<'a>> {
        if report.kind == ReportKind::Complaint {
            return None;
        }
        let result = report.first_failed().filter(|_| report.is_bounce)?;
        let reply = match (&result.reply_code, &result.status) {
            (Some(code), Some(st)) => format!("{code} {st} {}", result.diagnostic),
            (None, Some(st)) => format!("{st} {}", result.diagnostic),
            _ => result.diagnostic.clone(),
        };
        Some(Failure {
            result,
            reply: reply.trim().to_string(),
        })
    }

    /// A "delayed" notice: the remote still retries, the recipient stays as it is.
    pub fn transient(&self) -> bool {
        self.result.kind == Some(DeliveryKind::Transient)
    }
}

/// An original (message, recipient) a valid token names.
pub struct Origin {
    pub id: QueueId,
    pub rcpt: u16,
    /// The message as stored before the DSN was read; `None` once purged.
    pub message: Option<QueuedMessage>,
    /// This DSN made the recipient `bounced` (the queue recorded it), so it is counted
    /// and reported; a DSN for a recipient already final only suppresses.
    pub bounced: bool,
}

impl Origin {
    pub fn address(&self) -> Option<&str> {
        let m = self.message.as_ref()?;
        m.recipients
            .get(usize::from(self.rcpt))
            .map(|r| r.address.as_str())
    }

    pub fn mail_from(&self) -> Option<&str> {
        self.message.as_ref().map(|m| m.mail_from.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;

    fn rcpt(attempts: u32) -> Recipient {
        Recipient {
            address: "bob@gmail.test".into(),
            dest: Destination::Relay,
            state: RcptState::Deferred,
            attempts,
            next_attempt_ms: 0,
            last_reply: None,
            category: None,
            updated_ms: 0,
            esmtp: Default::default(),
        }
    }

    fn msg(r: Recipient) -> QueuedMessage {
        QueuedMessage {
            id: QueueId::generate(),
            received_ms: 0,
            listener: crate::envelope::ListenerKind::Submission,
            peer_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            helo: "erp.test".into(),
            mail_from: "app@erp.test".into(),
            size: 1,
            recipients: vec![r],
            stream: Default::default(),
            esmtp: Default::default(),
        }
    }

    fn failed(kind: DeliveryKind) -> RecipientResult {
        RecipientResult {
            address: "bob@gmail.test".into(),
            original_recipient: None,
            action: Some("failed".into()),
            status: Some("5.1.1".into()),
            reply_code: Some(550),
            category: Some(Category::InvalidAddress),
            reason: None,
            certain: true,
            hard: true,
            kind: Some(kind),
            diagnostic: " user unknown ".into(),
            remote_mta: None,
            last_attempt: None,
            provider: Provider::Other,
        }
    }

    fn report(kind: ReportKind, is_bounce: bool, r: RecipientResult) -> BounceReport {
        BounceReport {
            is_bounce,
            kind,
            recipients: vec![r],
            provider: Provider::Other,
            reporting_mta: None,
            envid: None,
            original_message_id: None,
            feedback_type: None,
        }
    }

    #[test]
    fn an_attempt_record_carries_the_category_delivery_gave_and_counts_this_attempt() {
        let m = msg(rcpt(2));
        let info = MessageInfo::default();
        let bounced = Outcome::Bounced {
            category: Some(Category::Blocked),
            reply: "550 5.1.1 user unknown".into(),
        };
        let a = Attempt::recorded(
            &m,
            &m.recipients[0],
            &info,
            &bounced,
            RcptState::Bounced,
            None,
        );
        assert_eq!(a.category, Some(Category::Blocked));
        assert_eq!(
            (a.reply.as_str(), a.attempts),
            ("550 5.1.1 user unknown", 3)
        );
        assert!(a.outbound());
        let deferred = Outcome::deferred("421 busy");
        let a = Attempt::recorded(
            &m,
            &m.recipients[0],
            &info,
            &deferred,
            RcptState::Deferred,
            None,
        );
        assert_eq!((a.category, a.reply.as_str()), (None, "421 busy"));
        // Held by warming: no attempt was made, so none is added.
        let a = Attempt::held_expired(&m, &m.recipients[0], &info, "warming cap");
        assert_eq!((a.state, a.attempts), (RcptState::Expired, 2));
    }

    #[test]
    fn a_failure_is_the_first_failed_recipient_of_a_bounce_in_the_recorded_words() {
        let r = report(ReportKind::Bounce, true, failed(DeliveryKind::Permanent));
        let f = Failure::of(&r).expect("a failure");
        assert_eq!(f.reply, "550 5.1.1  user unknown");
        assert!(!f.transient());
        let r = report(ReportKind::Bounce, true, failed(DeliveryKind::Transient));
        assert!(Failure::of(&r).expect("a delay").transient());
        let mut no_code = failed(DeliveryKind::Permanent);
        no_code.reply_code = None;
        let r = report(ReportKind::Bounce, true, no_code);
        assert_eq!(
            Failure::of(&r).expect("a failure").reply,
            "5.1.1  user unknown"
        );
        // A complaint (whatever its flags) or a notice that is no bounce fails nobody.
        let r = report(ReportKind::Complaint, true, failed(DeliveryKind::Permanent));
        assert!(Failure::of(&r).is_none());
        let r = report(
            ReportKind::AutoReply,
            false,
            failed(DeliveryKind::Permanent),
        );
        assert!(Failure::of(&r).is_none());
    }
}
