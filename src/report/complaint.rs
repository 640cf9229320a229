//! Spam complaints (RFC 5965 ARF feedback reports, provider feedback loops) at the bounce
//! address: counted in `mxgate_complaints_total{sending_domain,provider}` and in the
//! sending domain's complaint rate ([`crate::suspension`]), and the `complained` event to
//! the ERP, with the message complained about found by VERP token or, without one, by the
//! quoted Message-ID.
//!
//! Split from the DSN path in [`super`] because a complaint is not a failed delivery: it
//! marks no recipient `bounced` and is reported even without a valid token (as an event
//! only — suppression still needs the token, see [`super::suppress`]).

use super::{MessageInfo, Observer, Origin};
use crate::bounce::{BounceReport, ReportKind};
use crate::envelope::{Destination, QueueId};
use crate::events::{Event, Kind};
use crate::providers::detect_provider;
use crate::suppression::complaint_suppresses;

/// What a `complained` event says about the message complained about.
struct Complaint {
    /// Empty when the report names none of our messages.
    queue_id: String,
    message_id: String,
    sender: String,
    recipient: String,
}

impl Complaint {
    fn unmapped(message_id: String, recipient: String) -> Complaint {
        Complaint {
            queue_id: String::new(),
            message_id,
            sender: String::new(),
            recipient,
        }
    }
}

/// Is `report` a complaint the ERP is told about (the types that also suppress)?
pub(super) fn tells_erp(report: &BounceReport) -> bool {
    report.kind == ReportKind::Complaint && complaint_suppresses(report.feedback_type.as_deref())
}

impl Observer {
    /// A spam complaint: counted once per message and recipient it is about (metric and
    /// the sending domain's complaint rate), then one `complained` event to the ERP per
    /// message and recipient the report names through a valid token (its stored address,
    /// Message-ID and sender), or, without one, a single event about the complaining
    /// address the report gives, with the returned message's Message-ID and, when that is
    /// one we delivered, its queue id and sender. The event only informs: the suppression
    /// rules (token required) are those of [`super::suppress`].
    pub(super) async fn complained(&self, dsn: QueueId, report: &BounceReport, origins: &[Origin]) {
        let complaints = self.complaints(report, origins).await;
        for c in &complaints {
            self.count_complaint(report, c);
        }
        let events = &self.inner.events;
        if !events.enabled() {
            return;
        }
        let feedback_type = report
            .feedback_type
            .clone()
            .unwrap_or_else(|| "abuse".to_owned());
        for c in complaints {
            events.emit(complaint_event(dsn, report, c, &feedback_type));
        }
    }

    /// The metric sample and, for one of our sending domains, a complaint in its rate.
    fn count_complaint(&self, report: &BounceReport, c: &Complaint) {
        let sending_domain = self.sending_domain(&c.sender);
        let provider = provider_of(report, &c.recipient);
        self.inner.metrics.complaint(&sending_domain, provider);
        if sending_domain != "other" {
            self.inner.suspensions.record_complaint(&sending_domain);
        }
    }

    /// What the complaint is about: per origin its token names, else what the quoted
    /// Message-ID finds.
    async fn complaints(&self, report: &BounceReport, origins: &[Origin]) -> Vec<Complaint> {
        let reported = report.recipients.first().map(|r| r.address.as_str());
        let reported = reported.filter(|a| !a.is_empty());
        let mut events_out = Vec::new();
        for origin in origins {
            let recipient = origin.address().or(reported).unwrap_or("").to_owned();
            let queue = self.inner.queue.clone();
            let id = origin.id;
            let body = tokio::task::spawn_blocking(move || queue.body(id))
                .await
                .ok()
                .flatten();
            let message_id = body
                .as_deref()
                .map(|b| MessageInfo::from_message(b).message_id)
                .filter(|m| !m.is_empty())
                .or_else(|| report.original_message_id.clone())
                .unwrap_or_default();
            events_out.push(Complaint {
                queue_id: origin.id.to_string(),
                message_id,
                sender: origin.mail_from().unwrap_or("").to_owned(),
                recipient,
            });
        }
        if events_out.is_empty() {
            events_out.push(self.by_message_id(report, reported).await);
        }
        events_out
    }

    /// A complaint without a valid token: the message its quoted Message-ID names, when we
    /// delivered one with it → (queue id, Message-ID, sender, recipient). The recipient is
    /// the message's own address matching the complainant, else (redacted or foreign) the
    /// complainant as reported — or the message's only recipient when the report gives none.
    async fn by_message_id(&self, report: &BounceReport, reported: Option<&str>) -> Complaint {
        let message_id = report.original_message_id.clone().unwrap_or_default();
        let complainant = reported.unwrap_or("").to_owned();
        if message_id.is_empty() {
            return Complaint::unmapped(message_id, complainant);
        }
        let (stats, queue) = (self.inner.stats.clone(), self.inner.queue.clone());
        let mid = message_id.clone();
        let found = tokio::task::spawn_blocking(move || {
            let id = stats.message_of(&mid)?;
            queue.get(id)
        })
        .await
        .ok()
        .flatten();
        let Some(msg) = found else {
            return Complaint::unmapped(message_id, complainant);
        };
        let relayed: Vec<&str> = msg
            .recipients
            .iter()
            .filter(|r| matches!(r.dest, Destination::Relay))
            .map(|r| r.address.as_str())
            .collect();
        let recipient = match relayed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(&complainant))
        {
            Some(a) => (*a).to_owned(),
            None if complainant.is_empty() && relayed.len() == 1 => relayed[0].to_owned(),
            None => complainant,
        };
        Complaint {
            queue_id: msg.id.to_string(),
            message_id,
            sender: msg.mail_from.clone(),
            recipient,
        }
    }
}

/// The `complained` event about `c`; the provider is told by the complainant's domain and
/// the report's Reporting-MTA.
fn complaint_event(
    dsn: QueueId,
    report: &BounceReport,
    c: Complaint,
    feedback_type: &str,
) -> Event {
    let provider = provider_of(report, &c.recipient);
    tracing::info!(dsn = %dsn, queue_id = c.queue_id, rcpt = %c.recipient, feedback_type, "spam complaint");
    Event {
        id: 0,
        event: Kind::Complained,
        timestamp: String::new(),
        queue_id: c.queue_id,
        message_id: c.message_id.trim_matches(['<', '>']).to_owned(),
        sender: c.sender,
        recipient: c.recipient,
        reply: format!("complaint: {feedback_type}"),
        category: None,
        status: None,
        attempts: 0,
        direction: "outbound",
        feedback_type: Some(feedback_type.to_owned()),
        provider: Some(provider.to_owned()),
    }
}

/// The complainant's provider, by its address and the report's Reporting-MTA.
fn provider_of(report: &BounceReport, recipient: &str) -> &'static str {
    let hosts: Vec<&str> = report.reporting_mta.as_deref().into_iter().collect();
    let rcpt = Some(recipient).filter(|r| !r.is_empty());
    detect_provider(rcpt, &hosts, "").as_label()
}
