//! The bounce stage's intake: DSNs the inbound listener stored for `bounce+TOKEN@`
//! ([`Queue::pending_bounces`]) → [`parse`](crate::bounce::parse) → metrics, and, when TOKEN is one
//! of ours, the loop closed: the original recipient marked `bounced` with its category and
//! the remote words, and — for a permanent hard bounce (Invalid address, Mailbox) or a spam
//! complaint — the recipient's address put on the [`SuppressionList`]. A spam complaint
//! also becomes a `complained` event to the ERP (with or without a valid token).
//!
//! A bounce with no valid token (forged, foreign, or sent to plain `bounce@`) is still
//! parsed, classified and counted; it stays stored, so nothing is lost. It suppresses
//! nothing: without the token nothing proves the mail was ours, and a forged DSN must not be
//! able to stop mail to an arbitrary address. Only after the outcome is durable is the DSN
//! dropped from the pending set, so a crash re-processes it (marking a recipient bounced or
//! suppressing an address twice is harmless).
//!
//! This file holds the intake loop and the DSN path (tokens → origins → metrics, the
//! recipient marked `bounced`, suppression); what is particular to spam complaints — which
//! feedback types count and the `complained` event — is in [`complaint`].

mod complaint;

pub use complaint::complaint_suppresses;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bounce::{BounceReport, Category, DeliveryKind, RecipientResult, ReportKind};
use crate::envelope::{Destination, QueueId};
use crate::live::View;
use crate::metrics::{BounceLabels, Metrics};
use crate::providers::Provider;
use crate::queue::{Queue, QueuedMessage};
use crate::report::Observer;
use crate::routing::token::TokenKey;
use crate::suppression::{Source, SuppressionList};

/// How often stored DSNs are looked for when nothing else wakes the intake.
const POLL: Duration = Duration::from_millis(250);

/// `sending_domain` label of a bounce whose original message is unknown (no valid token).
const UNKNOWN_DOMAIN: &str = "unknown";

pub struct Intake {
    queue: Queue,
    key: TokenKey,
    metrics: Metrics,
    suppressions: SuppressionList,
    /// Statistics and ERP events of bounces that close the loop, under the config in force.
    observers: View<Observer>,
}

/// The original message and recipient a valid token names.
struct Origin {
    id: QueueId,
    rcpt: u16,
    message: Option<QueuedMessage>,
}

impl Origin {
    fn address(&self) -> Option<&str> {
        let m = self.message.as_ref()?;
        m.recipients
            .get(usize::from(self.rcpt))
            .map(|r| r.address.as_str())
    }

    fn mail_from(&self) -> Option<&str> {
        self.message.as_ref().map(|m| m.mail_from.as_str())
    }
}

/// Length of a VERP token (18 bytes in lower-case base32, see `routing::token`).
const TOKEN_LEN: usize = 29;
/// At most this many candidate tokens are taken from one returned message.
const MAX_QUOTED: usize = 8;

/// `+TOKEN@` candidates quoted anywhere in the report (the returned message's Return-Path,
/// To of a feedback report's headers); the key decides which are real.
fn quoted_tokens(body: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in body.iter().enumerate().filter(|(_, b)| **b == b'+') {
        let Some(cand) = body.get(i + 1..i + 1 + TOKEN_LEN) else {
            break;
        };
        let token_like = cand
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_uppercase() || (b'2'..=b'7').contains(c));
        if token_like && body.get(i + 1 + TOKEN_LEN) == Some(&b'@') {
            let t = String::from_utf8_lossy(cand).to_ascii_lowercase();
            if !out.contains(&t) {
                out.push(t);
            }
            if out.len() >= MAX_QUOTED {
                break;
            }
        }
    }
    out
}

/// Does a bounce in this category mean the address itself is dead (issue 6 §6)?
pub fn suppresses(r: &RecipientResult) -> bool {
    r.category.is_some_and(|c| {
        crate::suppression::suppresses_category(c, r.kind != Some(DeliveryKind::Transient))
    })
}

impl Intake {
    pub fn new(
        queue: Queue,
        key: TokenKey,
        metrics: Metrics,
        suppressions: SuppressionList,
        observers: View<Observer>,
    ) -> Intake {
        Intake {
            queue,
            key,
            metrics,
            suppressions,
            observers,
        }
    }

    /// Processes stored DSNs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let queue = self.queue.clone();
            let pending = tokio::task::spawn_blocking(move || queue.pending_bounces())
                .await
                .unwrap_or_default();
            for id in pending {
                if shutdown.is_cancelled() {
                    return;
                }
                self.process(id).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn process(&self, id: QueueId) {
        let queue = self.queue.clone();
        let loaded =
            tokio::task::spawn_blocking(move || Some((queue.get(id)?, queue.body(id)?))).await;
        let Ok(Some((msg, body))) = loaded else {
            tracing::warn!(queue_id = %id, "stored DSN is unreadable; left for a later pass");
            return;
        };
        let quoted = quoted_tokens(&body);
        let report = match tokio::task::spawn_blocking(move || crate::bounce::parse(&body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue_id = %id, error = %e, "bounce parser failed; left stored");
                return;
            }
        };
        let mut origins = self.origins(id, &msg).await;
        if origins.is_empty() {
            // Sent to plain `bounce@` (feedback loops, MTAs that reply to the From): the
            // returned message's own `bounce+TOKEN@` return path still names the recipient.
            origins = self.verified(quoted).await;
        }
        let domain = self.sending_domain(origins.iter().find_map(Origin::mail_from));
        let email_type = self.email_type(origins.first()).await;
        let sending_ip = match origins.first() {
            Some(origin) => self.observers.get().sending_ip(origin.id, origin.rcpt),
            None => String::new(),
        };
        self.count(&report, &domain, email_type, &sending_ip);
        for origin in &origins {
            self.close_loop(id, origin, &report).await;
        }
        if report.kind == ReportKind::Complaint
            && complaint_suppresses(report.feedback_type.as_deref())
        {
            self.complained(id, &report, &origins).await;
        }
        if let Err(e) = self.queue.bounce_processed(id).await {
            tracing::warn!(queue_id = %id, error = %e, "cannot mark DSN processed; it will be read again");
        }
    }

    /// The (message, recipient) pairs the DSN's `bounce+TOKEN` recipients name; forged or
    /// foreign tokens are logged and skipped.
    async fn origins(&self, dsn: QueueId, msg: &QueuedMessage) -> Vec<Origin> {
        let tokens: Vec<String> = msg
            .recipients
            .iter()
            .filter_map(|r| match &r.dest {
                Destination::Bounce { token } => Some(token.clone()),
                _ => None,
            })
            .collect();
        let out = self.verified(tokens).await;
        if out.is_empty() {
            tracing::info!(queue_id = %dsn, "DSN without a valid VERP token: classified and counted only");
        }
        out
    }

    /// The origins of the tokens that verify; the others are skipped.
    async fn verified(&self, tokens: Vec<String>) -> Vec<Origin> {
        let mut out: Vec<Origin> = Vec::new();
        for token in tokens {
            let Some((id, rcpt)) = self.key.verify(&token) else {
                continue;
            };
            if out.iter().any(|o| o.id == id && o.rcpt == rcpt) {
                continue;
            }
            let queue = self.queue.clone();
            let message = tokio::task::spawn_blocking(move || queue.get(id))
                .await
                .ok()
                .flatten();
            out.push(Origin { id, rcpt, message });
        }
        out
    }

    /// The `sending_domain` label: bounded to our enrolled and served domains (the
    /// statistics' rule) when those are known, `unknown` without an original message.
    fn sending_domain(&self, mail_from: Option<&str>) -> String {
        let Some(from) = mail_from else {
            return UNKNOWN_DOMAIN.to_owned();
        };
        self.observers.get().sending_domain(from)
    }

    /// The original message's stored stream (`transactional` | `mass`), when known.
    async fn email_type(&self, origin: Option<&Origin>) -> &'static str {
        let Some(id) = origin.map(|o| o.id) else {
            return "transactional";
        };
        let queue = self.queue.clone();
        tokio::task::spawn_blocking(move || queue.get(id))
            .await
            .ok()
            .flatten()
            .map_or("transactional", |m| m.stream.as_str())
    }

    fn count(
        &self,
        report: &BounceReport,
        sending_domain: &str,
        email_type: &'static str,
        sending_ip: &str,
    ) {
        if !report.is_bounce {
            tracing::info!(kind = ?report.kind, feedback_type = ?report.feedback_type, "message at the bounce address is no bounce");
            return;
        }
        for r in report.recipients.iter().filter(|r| r.category.is_some()) {
            let category = r.category.map(|c| c.as_str()).unwrap_or("");
            let provider = r.provider.as_label();
            let kind = r.kind.unwrap_or(DeliveryKind::Permanent).as_label();
            self.metrics.bounce(&BounceLabels {
                category,
                provider,
                sending_domain,
                email_type,
                sending_ip,
                kind,
            });
            if r.category == Some(Category::Blocked) && r.provider != Provider::Other {
                self.metrics.esp_block(provider);
            }
        }
    }

    /// TOKEN names (message, recipient): a permanent failure makes that recipient `bounced`;
    /// a hard one or a complaint suppresses its address.
    async fn close_loop(&self, dsn: QueueId, origin: &Origin, report: &BounceReport) {
        if report.kind == ReportKind::Complaint {
            if complaint_suppresses(report.feedback_type.as_deref()) {
                let reason = format!(
                    "complaint: {}",
                    report.feedback_type.as_deref().unwrap_or("abuse")
                );
                self.suppress(origin, &reason, Source::Complaint, None)
                    .await;
            }
            return;
        }
        let Some(failed) = report.first_failed().filter(|_| report.is_bounce) else {
            return;
        };
        let reply = match (&failed.reply_code, &failed.status) {
            (Some(code), Some(st)) => format!("{code} {st} {}", failed.diagnostic),
            (None, Some(st)) => format!("{st} {}", failed.diagnostic),
            _ => failed.diagnostic.clone(),
        };
        let reply = reply.trim().to_string();
        if failed.kind == Some(DeliveryKind::Transient) {
            // A "delayed" notice: the remote still retries; the recipient stays as it is.
            tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, dsn = %dsn, reply = %reply, "delay notice for a recipient");
            return;
        }
        let category = failed.category;
        match self
            .queue
            .bounce_reported(origin.id, origin.rcpt, category, reply.clone())
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, dsn = %dsn, category = ?category.map(|c| c.as_str()), "recipient bounced (DSN)");
                let observer = self.observers.get();
                observer.dsn(origin.id, origin.rcpt, failed).await;
            }
            Ok(None) => {
                tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, "DSN for a recipient that is already final")
            }
            Err(e) => {
                tracing::info!(queue_id = %origin.id, error = %e, "DSN names no message in the queue")
            }
        }
        if suppresses(failed) {
            let reason = failed.category.map_or("bounce", |c| c.as_str());
            self.suppress(origin, reason, Source::Bounce, Some(&reply))
                .await;
        }
    }

    async fn suppress(&self, origin: &Origin, reason: &str, source: Source, detail: Option<&str>) {
        let Some(address) = origin.address() else {
            tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, "token names no stored recipient; nothing to suppress");
            return;
        };
        let detail = detail.map_or_else(
            || format!("message {}", origin.id),
            |d| format!("{d} (message {})", origin.id),
        );
        match self
            .suppressions
            .add(address, reason, source, Some(&detail))
            .await
        {
            Ok((added, _)) => {
                tracing::info!(rcpt = %address, reason, source = source.as_str(), ?added, "address suppressed")
            }
            Err(e) => {
                tracing::warn!(rcpt = %address, error = %e, "cannot record the suppression")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_a_returned_return_path() {
        let t = "abcdefghijklmnopqrstuvwxyz234";
        let body = format!(
            "Return-Path: <bounce+{t}@example.test>\r\nTo: <x+short@y.test>\r\nCc: bounce+{}@example.test\r\n",
            t.to_uppercase()
        );
        assert_eq!(quoted_tokens(body.as_bytes()), vec![t.to_string()]);
        assert!(quoted_tokens(b"no tokens + here @").is_empty());
        assert!(quoted_tokens(b"+").is_empty());
    }

    #[test]
    fn only_hard_permanent_bounces_and_real_complaints_suppress() {
        let mut r = RecipientResult {
            address: "a@b.test".into(),
            original_recipient: None,
            action: Some("failed".into()),
            status: Some("5.1.1".into()),
            reply_code: Some(550),
            category: Some(Category::InvalidAddress),
            reason: None,
            hard: true,
            kind: Some(DeliveryKind::Permanent),
            diagnostic: String::new(),
            remote_mta: None,
            last_attempt: None,
            provider: Provider::Other,
        };
        assert!(suppresses(&r));
        r.category = Some(Category::Mailbox);
        assert!(suppresses(&r));
        r.kind = Some(DeliveryKind::Transient);
        assert!(!suppresses(&r));
        r.kind = Some(DeliveryKind::Permanent);
        r.category = Some(Category::MailboxFull);
        assert!(!suppresses(&r));
        r.category = Some(Category::Blocked);
        assert!(!suppresses(&r));
        assert!(complaint_suppresses(Some("abuse")));
        assert!(complaint_suppresses(None));
        assert!(!complaint_suppresses(Some("not-spam")));
        assert!(!complaint_suppresses(Some("auth-failure")));
    }
}
