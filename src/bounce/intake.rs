//! The bounce stage's intake: DSNs the inbound listener stored for `bounce+TOKEN@`
//! ([`Queue::pending_bounces`]) → [`parse`](super::parse) → metrics, and, when TOKEN is one
//! of ours, the original recipient marked `bounced` with its category and the remote words.
//!
//! A bounce with no valid token (forged, foreign, or sent to plain `bounce@`) is still
//! parsed, classified and counted; it stays stored, so nothing is lost. Only after the
//! outcome is durable is the DSN dropped from the pending set, so a crash re-processes it
//! (marking a recipient bounced twice is harmless).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BounceReport, DeliveryKind, Provider};
use crate::envelope::QueueId;
use crate::metrics::{BounceLabels, Metrics};
use crate::queue::Queue;
use crate::routing::Destination;
use crate::routing::token::TokenKey;

/// How often stored DSNs are looked for when nothing else wakes the intake.
const POLL: Duration = Duration::from_millis(250);

pub struct Intake {
    queue: Queue,
    key: TokenKey,
    metrics: Metrics,
}

impl Intake {
    pub fn new(queue: Queue, key: TokenKey, metrics: Metrics) -> Intake {
        Intake {
            queue,
            key,
            metrics,
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
        let report = match tokio::task::spawn_blocking(move || super::parse(&body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(queue_id = %id, error = %e, "bounce parser failed; left stored");
                return;
            }
        };
        let tokens: Vec<String> = msg
            .recipients
            .iter()
            .filter_map(|r| match &r.dest {
                Destination::Bounce { token } => Some(token.clone()),
                _ => None,
            })
            .collect();
        self.count(&report);
        for token in &tokens {
            self.close_loop(id, token, &report).await;
        }
        if let Err(e) = self.queue.bounce_processed(id).await {
            tracing::warn!(queue_id = %id, error = %e, "cannot mark DSN processed; it will be read again");
        }
    }

    fn count(&self, report: &BounceReport) {
        if !report.is_bounce {
            tracing::info!(kind = ?report.kind, "message at the bounce address is no bounce");
            return;
        }
        for r in report.recipients.iter().filter(|r| r.category.is_some()) {
            let category = r.category.map(|c| c.as_str()).unwrap_or("");
            let provider = r.provider.as_label();
            let kind = r.kind.unwrap_or(DeliveryKind::Permanent).as_label();
            self.metrics.bounce(&BounceLabels {
                category,
                provider,
                sending_domain: "unknown",
                email_type: "transactional",
                sending_ip: "",
                kind,
            });
            if r.category == Some(super::Category::Blocked) && r.provider != Provider::Other {
                self.metrics.esp_block(provider);
            }
        }
    }

    /// TOKEN names (message, recipient): that recipient is now `bounced`.
    async fn close_loop(&self, dsn: QueueId, token: &str, report: &BounceReport) {
        let Some((orig, idx)) = self.key.verify(token) else {
            tracing::info!(queue_id = %dsn, "DSN without a valid VERP token: classified and counted only");
            return;
        };
        let Some(failed) = report.first_failed() else {
            return;
        };
        let category = failed.category.map(|c| c.as_str().to_string());
        let reply = match (&failed.reply_code, &failed.status) {
            (Some(code), Some(st)) => format!("{code} {st} {}", failed.diagnostic),
            (None, Some(st)) => format!("{st} {}", failed.diagnostic),
            _ => failed.diagnostic.clone(),
        };
        match self
            .queue
            .bounce_reported(orig, idx, category, reply.trim().to_string())
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(queue_id = %orig, rcpt = idx, dsn = %dsn, "recipient bounced (DSN)")
            }
            Ok(None) => {
                tracing::info!(queue_id = %orig, rcpt = idx, "DSN for a recipient that is already final")
            }
            Err(e) => {
                tracing::info!(queue_id = %orig, error = %e, "DSN names no message in the queue")
            }
        }
    }
}
