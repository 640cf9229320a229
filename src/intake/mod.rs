//! The bounce stage's intake: DSNs and complaints the inbound listener stored for
//! `bounce+TOKEN@` ([`Queue::pending_bounces`]) → [`parse`](crate::bounce::parse) (classified
//! once there) → the original recipients their valid tokens name → for a permanent failure,
//! the recipient marked `bounced` in the queue with its category and the remote words →
//! one [`Record::Returned`] to [`report`](crate::report), which counts it, emits the events
//! and applies the suppression rules. When the original's envelope sender is on one of our
//! `[[domains]]` (Odoo's `bounce+<id>-<model>-<res_id>@`), the bounce is also fed back to it
//! through the domain's ERP route, queued in the batch that marks the recipient bounced.
//!
//! A bounce with no valid token (forged, foreign, or sent to plain `bounce@`) is still
//! parsed, classified and counted; it stays stored, so nothing is lost; report suppresses
//! nothing for it. Only after the outcome is durable and reported is the DSN dropped from
//! the pending set, so a crash re-processes it (marking a recipient bounced or suppressing
//! an address twice is harmless).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::delivery::attempt::Context;
use crate::envelope::{Destination, QueueId};
use crate::live::View;
use crate::queue::{NewMessage, Queue, QueuedMessage};
use crate::report::{Failure, Observer, Origin, Record, Returned};
use crate::routing::token::TokenKey;

/// How often stored DSNs are looked for when nothing else wakes the intake.
const POLL: Duration = Duration::from_millis(250);

pub struct Intake {
    queue: Queue,
    key: TokenKey,
    /// Where returned reports go, under the config in force.
    observers: View<Observer>,
    /// The delivery context in force: its relay builds the bounce fed back to the ERP.
    delivery: View<Context>,
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

impl Intake {
    pub fn new(
        queue: Queue,
        key: TokenKey,
        observers: View<Observer>,
        delivery: View<Context>,
    ) -> Intake {
        Intake {
            queue,
            key,
            observers,
            delivery,
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
        let failure = Failure::of(&report);
        if let Some(f) = &failure {
            for origin in &mut origins {
                origin.bounced = self.close_loop(id, origin, f).await;
            }
        }
        let returned = Returned {
            dsn: id,
            report: &report,
            failure,
            origins: &origins,
        };
        self.observers
            .get()
            .report(Record::Returned(returned))
            .await;
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
            out.push(Origin {
                id,
                rcpt,
                message,
                bounced: false,
            });
        }
        out
    }

    /// What makes the bounce fed back to the ERP that sent the original (the relay's
    /// [`feedback_for`](crate::delivery::relay::Relay::feedback_for)), with the original's
    /// header section read here, outside the queue's commit.
    async fn feedback(
        &self,
        origin: &Origin,
        reply: String,
        category: Option<crate::bounce::Category>,
    ) -> impl FnOnce(&QueuedMessage) -> Option<NewMessage> + Send + 'static {
        let relay = self.delivery.get().relay.clone();
        let (queue, id) = (self.queue.clone(), origin.id);
        let headers = match &relay {
            Some(_) => tokio::task::spawn_blocking(move || queue.body(id))
                .await
                .ok()
                .flatten()
                .map(|b| crate::message::header_section(&b).to_vec())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let idx = origin.rcpt;
        move |m: &QueuedMessage| {
            let category = category.map(|c| c.as_str());
            relay?.feedback_for(m, idx, &reply, category, &headers)
        }
    }

    /// A permanent failure makes the recipient TOKEN names `bounced` (the queue's record
    /// of the outcome); true when this DSN did, so report counts it.
    async fn close_loop(&self, dsn: QueueId, origin: &Origin, failed: &Failure<'_>) -> bool {
        let reply = &failed.reply;
        if failed.transient() {
            // A "delayed" notice: the remote still retries; the recipient stays as it is.
            tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, dsn = %dsn, reply = %reply, "delay notice for a recipient");
            return false;
        }
        let category = failed.result.category;
        let (observer, result, idx) = (self.observers.get(), failed.result.clone(), origin.rcpt);
        let stats = move |m: &QueuedMessage| vec![observer.dsn_stats_write(m, idx, &result)];
        let feedback = self.feedback(origin, reply.clone(), category).await;
        let recorded = self
            .queue
            .bounce_reported(
                origin.id,
                origin.rcpt,
                category,
                reply.clone(),
                stats,
                feedback,
            )
            .await;
        match recorded {
            Ok(Some(_)) => {
                tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, dsn = %dsn, category = ?category.map(|c| c.as_str()), "recipient bounced (DSN)");
                true
            }
            Ok(None) => {
                tracing::info!(queue_id = %origin.id, rcpt = origin.rcpt, "DSN for a recipient that is already final");
                false
            }
            Err(e) => {
                tracing::info!(queue_id = %origin.id, error = %e, "DSN names no message in the queue");
                false
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
}
