//! The delivery scheduler: due recipients from the queue's `d/` index in, attempts out, each
//! outcome recorded back into the queue.
//!
//! Loop: seek the index from its earliest key, dispatch what is due (up to
//! `queue.concurrency` in flight), then sleep until the next due time, a queue change
//! (enqueue, retry), an attempt finishing, or shutdown. An in-memory in-flight set keeps a
//! recipient from being dispatched twice at once; its `d/` key is only removed when the
//! outcome is recorded, so after a crash the attempt simply happens again.
//!
//! Shutdown: no new attempts; those in flight get `¾ × server.shutdown_timeout` to finish
//! and record; any still running then are abandoned (and retried after restart).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{self, Context};
use crate::clock::Clock;
use crate::envelope::QueueId;
use crate::live::View;
use crate::metrics::Metrics;
use crate::queue::Outcome;
use crate::queue::{
    Due, DueScan, NewMessage, Queue, QueuedMessage, RcptKey, RcptState, Recipient, StoreError,
};

/// Longest sleep between looks at the index, even when nothing is due sooner: bounds the
/// effect of a wall-clock jump (and of a test stepping the [`Clock`]) on the schedule.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Pause after the queue failed to record an outcome, so a broken store is not hammered.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);

pub struct Worker {
    queue: Queue,
    /// The attempt context of the config in force; each attempt takes one snapshot.
    contexts: View<Context>,
    metrics: Metrics,
    clock: Clock,
    /// `queue.concurrency` at start (the queue's settings take a restart).
    concurrency: usize,
    drain: Duration,
}

impl Worker {
    pub fn new(queue: Queue, contexts: View<Context>, metrics: Metrics, clock: Clock) -> Worker {
        let config = contexts.get().config.clone();
        Worker {
            queue,
            contexts,
            metrics,
            clock,
            concurrency: config.queue.concurrency.max(1),
            drain: config.server.shutdown_timeout.get() * 3 / 4,
        }
    }

    /// Slots `mass` mail may hold (`streams.mass_share_percent`, reloadable): the rest stay
    /// free for transactional mail, which mass mail therefore never delays (issue 6 item 5).
    fn mass_slots(&self) -> usize {
        self.contexts
            .get()
            .config
            .streams
            .mass_slots(self.concurrency)
    }

    /// Delivers until `shutdown` is cancelled, then lets in-flight attempts finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut in_flight: HashMap<Id, RcptKey> = HashMap::new();
        let mut mass: HashSet<Id> = HashSet::new();
        loop {
            let free = self.concurrency.saturating_sub(tasks.len());
            // With no free slot, only a finishing attempt (or shutdown) matters: no timer.
            let mut wait = None;
            if free > 0 {
                let mass_free = self.mass_slots().saturating_sub(mass.len());
                let scan = self.scan(&in_flight, free, mass_free).await;
                for due in scan.ready {
                    let handle = tasks.spawn(self.attempt(due));
                    in_flight.insert(handle.id(), (due.id, due.rcpt));
                    if due.mass {
                        mass.insert(handle.id());
                    }
                }
                wait = Some(self.until(scan.next_due_ms));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next_with_id() => {
                    let id = match &done {
                        Ok((id, ())) => *id,
                        Err(e) => {
                            tracing::warn!(error = %e, "delivery attempt task failed");
                            e.id()
                        }
                    };
                    in_flight.remove(&id);
                    mass.remove(&id);
                }
                _ = self.queue.changed() => {}
                _ = tokio::time::sleep(wait.unwrap_or(MAX_IDLE)), if wait.is_some() => {}
            }
        }
        self.finish(tasks).await;
    }

    /// Due recipients not in flight, at most `max`. A store failure is logged and treated as
    /// "nothing due" (the loop looks again after [`MAX_IDLE`]).
    async fn scan(&self, in_flight: &HashMap<Id, RcptKey>, max: usize, max_mass: usize) -> DueScan {
        let queue = self.queue.clone();
        let skip: HashSet<RcptKey> = in_flight.values().copied().collect();
        let now = self.clock.now_ms();
        let scanned =
            tokio::task::spawn_blocking(move || queue.due_streams(now, &skip, max, max_mass)).await;
        match scanned {
            Ok(Ok(scan)) => scan,
            Ok(Err(StoreError::Closed)) => DueScan::default(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the delivery schedule");
                DueScan::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "delivery schedule scan task failed");
                DueScan::default()
            }
        }
    }

    fn until(&self, next_due_ms: Option<u64>) -> Duration {
        next_due_ms.map_or(MAX_IDLE, |due| {
            Duration::from_millis(due.saturating_sub(self.clock.now_ms())).min(MAX_IDLE)
        })
    }

    /// One recipient's attempt, as a task of its own, on the config in force now.
    fn attempt(&self, due: Due) -> impl Future<Output = ()> + Send + 'static {
        let queue = self.queue.clone();
        let ctx = self.contexts.get();
        let metrics = self.metrics.clone();
        let span = tracing::info_span!("delivery", queue_id = %due.id, rcpt = due.rcpt);
        async move { attempt_one(queue, ctx, metrics, due).await }.instrument(span)
    }

    async fn finish(self, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain, all).await.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "delivery attempts still running at the shutdown deadline: abandoned, retried after restart"
            );
            tasks.shutdown().await;
        }
    }
}

async fn attempt_one(queue: Queue, ctx: Arc<Context>, metrics: Metrics, due: Due) {
    let q = queue.clone();
    let loaded = tokio::task::spawn_blocking(move || (q.get(due.id), q.body(due.id))).await;
    let (msg, body) = loaded.unwrap_or((None, None));
    let rcpt = msg
        .as_ref()
        .and_then(|m| m.recipients.get(usize::from(due.rcpt)))
        .filter(|r| r.state.is_pending() && r.next_attempt_ms == due.due_ms);
    let (Some(msg), Some(rcpt)) = (msg.as_ref(), rcpt) else {
        // The index entry is stale (retried, cancelled or deleted meanwhile).
        if let Err(e) = queue.forget_due(due).await {
            tracing::warn!(error = %e, "cannot drop a stale schedule entry");
        }
        return;
    };
    let kind = ctx.kind_label(rcpt);
    let start = Instant::now();
    let mut info = match (&ctx.observer, &body) {
        (Some(_), Some(b)) => crate::report::MessageInfo::from_message(b),
        _ => Default::default(),
    };
    // The stored email type wins over what the headers suggest.
    info.email_type = msg.stream.as_str();
    // Over a warming cap or provider rate: held until the window opens, no attempt.
    let ticket = match &ctx.warming {
        Some(w) => w.admit(msg, rcpt, ctx.relay.as_deref()).await,
        None => Ok(None),
    };
    let headers = body.as_deref().map(header_section).unwrap_or_default();
    let mut sending_ip = None;
    let outcome = match (ticket, body) {
        // Held: recorded as `deferred` until the window opens, without counting an
        // attempt, without a `mxgate_delivery_attempts_total` sample and without a
        // `deferred` event. Expiry still applies (event, DSN), and so does the delay
        // warning: held mail is delayed mail all the same.
        (Err(hold), _) => {
            tracing::info!(rcpt = %rcpt.address, reason = %hold.reason, retry_at_ms = hold.retry_at, "held");
            let follow = dsn_follow(&ctx, due, rcpt, hold.reason.clone(), headers);
            let recorded = queue.hold_then(due.id, due.rcpt, &hold, follow).await;
            if recorded_state(msg, recorded).await == Some(RcptState::Expired)
                && let Some(o) = &ctx.observer
            {
                o.held_expired(msg, rcpt, &info, &hold.reason);
            }
            return;
        }
        (Ok(ticket), Some(body)) => {
            let _connection = match (&ctx.warming, &ticket) {
                (Some(w), Some(t)) => w.connection(t).await,
                _ => None,
            };
            let (outcome, ip) = attempt::run_from(&ctx, msg, rcpt, body).await;
            if let (Some(w), Some(t)) = (&ctx.warming, ticket) {
                w.settle(t, &outcome, ip);
            }
            sending_ip = ip;
            outcome
        }
        // Meta without body: a damaged store. Deferred, so it is visible and expires.
        (Ok(ticket), None) => {
            let outcome = Outcome::deferred("queue: message body is missing");
            if let (Some(w), Some(t)) = (&ctx.warming, ticket) {
                w.settle(t, &outcome, None);
            }
            outcome
        }
    };
    metrics.delivery_attempt(outcome.as_label(), kind, start.elapsed().as_secs_f64());
    log(&outcome, &rcpt.address, kind);
    let follow = dsn_follow(&ctx, due, rcpt, outcome_reply(&outcome), headers);
    let recorded = queue.record_then(due.id, due.rcpt, &outcome, follow).await;
    if let Some(state) = recorded_state(msg, recorded).await
        && let Some(o) = &ctx.observer
    {
        o.attempt_from(msg, rcpt, &info, &outcome, state, sending_ip);
    }
}

/// The recipient's new state once the queue recorded it (and the DSN it owes, logged);
/// store failures are logged (the `d/` entry stays, so the recipient comes round again).
async fn recorded_state(
    msg: &QueuedMessage,
    recorded: Result<Option<(RcptState, Option<QueueId>)>, StoreError>,
) -> Option<RcptState> {
    match recorded {
        Ok(Some((state, dsn))) => {
            if let Some(dsn) = dsn {
                tracing::info!(queue_id = %msg.id, %dsn, to = %msg.mail_from, "DSN queued");
            }
            Some(state)
        }
        Ok(None) | Err(StoreError::Closed) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a delivery outcome; the attempt will be repeated");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
            None
        }
    }
}

/// What the queue writes with the recipient's new state: the DSN, if any, that state owes
/// the sender, with `reply` as its words and `headers` (the original's header section)
/// returned. Built inside the queue's commit so failure and DSN land together.
fn dsn_follow(
    ctx: &Context,
    due: Due,
    before: &Recipient,
    reply: String,
    headers: Vec<u8>,
) -> impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static {
    let relay = ctx.relay.clone();
    let before = before.clone();
    move |msg, state| relay?.dsn_for(msg, due.rcpt, &before, state, &reply, &headers)
}

/// The header section of `body` (through the blank line), what a DSN returns.
fn header_section(body: &[u8]) -> Vec<u8> {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(body.len(), |i| i + 4);
    body[..end].to_vec()
}

fn outcome_reply(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Sent { reply } | Outcome::Bounced { reply, .. } => reply.clone(),
        Outcome::Deferred { reason } => reason.clone(),
    }
}

fn log(outcome: &Outcome, rcpt: &str, kind: &str) {
    match outcome {
        Outcome::Sent { reply } => tracing::info!(rcpt, route_kind = kind, reply, "delivered"),
        Outcome::Deferred { reason, .. } => {
            tracing::info!(rcpt, route_kind = kind, reason, "deferred")
        }
        Outcome::Bounced { reply, .. } => tracing::info!(rcpt, route_kind = kind, reply, "bounced"),
    }
}
