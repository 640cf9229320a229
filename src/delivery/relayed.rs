//! The relay lane: a recipient whose mail leaves over SMTP to another host.
//!
//! In order: the [`plan`](super::plan) (smart hosts or MX, the stream's source IP and, when
//! warming is on, the recipient's provider); [`warming`](super::warming) admits the attempt
//! or holds the recipient until its window opens; the [`relay`](super::relay) tries each
//! hop; warming settles the ticket with the outcome; the queue records it together with the
//! [`dsn`](super::dsn) the new state owes the sender.
//!
//! Two jobs take this lane. A relayed recipient ([`Job::Relayed`]) gets all of it. A bounce
//! returned to the original sender of a forwarded message ([`Job::SrsReturn`]) is plan and
//! SMTP only: it is no send of the sending domain (no warming), and a DSN about a DSN
//! would loop (none).

use super::Error;
use super::attempt::{Attempt, body_missing, recorded_state};
use super::outcome::classify;
use super::relay::Attempted;
use super::warming::Warming;
use crate::queue::{Hold, Outcome};
use crate::queue::{NewMessage, QueuedMessage, RcptState};
use crate::report::{self, Record};

/// What the lane delivers.
pub(super) enum Job<'a> {
    /// A `Destination::Relay` recipient: to its own address.
    Relayed,
    /// A `Destination::SrsReturn` recipient: to the original sender `to` an SRS address
    /// encoded.
    SrsReturn { to: &'a str },
}

/// One attempt of the relay lane, recorded (or the recipient held).
pub(super) async fn attempt(a: &Attempt<'_>, body: Option<Vec<u8>>, job: Job<'_>) {
    let relayed = matches!(job, Job::Relayed);
    let (to, kind) = match job {
        // The mailbox provider (gmail, microsoft, ..., other), as SPEC's
        // `mxgate_delivery_attempts_total{result,provider}` means it; bounded set.
        Job::Relayed => (
            a.rcpt.address.as_str(),
            crate::providers::detect_provider(Some(&a.rcpt.address), &[], "").as_label(),
        ),
        Job::SrsReturn { to } => (to, "relay"),
    };
    // What a DSN returns of the original: its header section, or all of it (RET=FULL).
    let full = a.msg.esmtp.ret == Some(crate::envelope::esmtp::Ret::Full);
    let headers = match (&body, relayed) {
        (Some(b), true) if full => b.clone(),
        (Some(b), true) => crate::message::header_section(b).to_vec(),
        _ => Vec::new(),
    };
    let Some(relay) = a.ctx.relay.as_deref() else {
        let outcome = classify(&Error::NoRelay);
        return a.finish(outcome, kind, None, |_, _| None).await;
    };
    let Some(body) = body else {
        let outcome = body_missing();
        let follow = dsn_follow(a, relayed, outcome_reply(&outcome), headers);
        return a.finish(outcome, kind, None, follow).await;
    };
    let warming = a.ctx.warming.as_ref().filter(|_| relayed);
    let mut plan = match relay.plan(a.msg, to, warming.map(Warming::providers)).await {
        Ok(plan) => plan,
        Err(e) => {
            let outcome = classify(&e);
            let follow = dsn_follow(a, relayed, outcome_reply(&outcome), headers);
            return a.finish(outcome, kind, None, follow).await;
        }
    };
    // Over a warming cap or provider rate: held until the window opens, no attempt.
    let admitted = match warming {
        Some(w) => Some(w.admit_shared(a.msg, &mut plan).await),
        None => None,
    };
    let ticket = match admitted {
        Some(Err(h)) => {
            let follow = dsn_follow(a, relayed, h.reason.clone(), headers);
            return hold(a, h, follow).await;
        }
        Some(Ok(ticket)) => ticket,
        None => None,
    };
    let _connection = match (warming, &ticket) {
        (Some(w), Some(t)) => w.connection(t).await,
        _ => None,
    };
    let (result, ip) = relay.send(a.msg, verp_index(a), to, &body, &plan).await;
    let outcome = match result {
        Ok(accepted) => Outcome::Sent {
            reply: accepted.reply,
        },
        Err(e) => classify(&e),
    };
    if let (Some(w), Some(t)) = (warming, ticket) {
        w.settle(t, &outcome, ip);
    }
    let follow = dsn_follow(a, relayed, outcome_reply(&outcome), headers);
    a.finish(outcome, kind, ip, follow).await;
}

/// Held: recorded as `deferred` until the window opens, without counting an attempt,
/// without a `mxgate_delivery_attempts_total` sample and without a `deferred` event.
/// Expiry still applies (event, DSN), and so does the delay warning: held mail is delayed
/// mail all the same.
async fn hold(
    a: &Attempt<'_>,
    hold: Hold,
    follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
) {
    tracing::info!(rcpt = %a.rcpt.address, reason = %hold.reason, retry_at_ms = hold.retry_at, "held");
    let stats = a.held_stats_writes(&hold.reason);
    let recorded = (a.queue)
        .hold_then(a.due.id, a.due.rcpt, &hold, follow, stats)
        .await;
    if recorded_state(a.msg, recorded).await == Some(RcptState::Expired)
        && let Some(o) = &a.ctx.observer
    {
        let expired = report::Attempt::held_expired(a.msg, a.rcpt, &a.info, &hold.reason);
        o.report(Record::Attempt(expired)).await;
    }
}

/// The index the VERP token names. Recipients are unique per message (RCPT
/// de-duplicates), so the address finds it.
fn verp_index(a: &Attempt<'_>) -> u16 {
    a.msg
        .recipients
        .iter()
        .position(|r| r.address == a.rcpt.address)
        .and_then(|i| u16::try_from(i).ok())
        .unwrap_or(0)
}

/// What the queue writes with the recipient's new state: for a relayed recipient, the DSN
/// (if any) that state owes the sender, with `reply` as its words and `content` (the
/// original's header section, or all of it for RET=FULL) returned. Built inside the
/// queue's commit so the new state and its DSN land together.
fn dsn_follow(
    a: &Attempt<'_>,
    relayed: bool,
    reply: String,
    content: Vec<u8>,
) -> impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static {
    let owed = a
        .ctx
        .relay
        .clone()
        .filter(|_| relayed)
        .map(|relay| (relay, a.rcpt.clone()));
    let idx = a.due.rcpt;
    move |msg, state| {
        let (relay, before) = owed?;
        let attempt = Attempted {
            reply: &reply,
            content: &content,
        };
        relay.dsn_for(msg, idx, &before, state, &attempt)
    }
}

fn outcome_reply(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Sent { reply } | Outcome::Bounced { reply, .. } => reply.clone(),
        Outcome::Deferred { reason } => reason.clone(),
    }
}
