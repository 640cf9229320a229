//! The delivery scheduler: due recipients from the queue's `d/` index in, attempts out, each
//! outcome recorded back into the queue. Each attempt matches its recipient's destination
//! once and runs in the local or the relay lane (see [`attempt`]'s doc below).
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

use super::attempt::{Attempt, Context};
use super::{local, relayed};
use crate::clock::Clock;
use crate::envelope::Destination;
use crate::live::View;
use crate::metrics::Metrics;
use crate::queue::{Due, DueScan, Queue, RcptKey, StoreError};
use crate::report::MessageInfo;

/// Longest sleep between looks at the index, even when nothing is due sooner: bounds the
/// effect of a wall-clock jump (and of a test stepping the [`Clock`]) on the schedule.
const MAX_IDLE: Duration = Duration::from_secs(1);

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
        // What the last scan left: when it returned every due entry, an attempt finishing
        // needs no new scan unless a write added an entry since (issue 13: a scan per
        // finished attempt was half of all scans).
        let (mut rescan, mut more, mut next_due_ms) = (true, false, None);
        loop {
            let free = self.concurrency.saturating_sub(tasks.len());
            // With no free slot, only a finishing attempt (or shutdown) matters: no timer.
            let mut wait = None;
            if free > 0 {
                if rescan {
                    let mass_free = self.mass_slots().saturating_sub(mass.len());
                    let scan = self.scan(&in_flight, free, mass_free);
                    for due in scan.ready {
                        let handle = tasks.spawn(self.attempt(due));
                        in_flight.insert(handle.id(), (due.id, due.rcpt));
                        if due.mass {
                            mass.insert(handle.id());
                        }
                    }
                    (more, next_due_ms) = (scan.more, scan.next_due_ms);
                }
                wait = Some(self.until(next_due_ms));
            }
            rescan = true;
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
                    // Passed-over mass mail (`more`) may take the freed slot now.
                    rescan = more || self.queue.due_added_since_scan();
                }
                _ = self.queue.changed() => {}
                _ = tokio::time::sleep(wait.unwrap_or(MAX_IDLE)), if wait.is_some() => {}
            }
        }
        self.finish(tasks).await;
    }

    /// Due recipients not in flight, at most `max`. A store failure is logged and treated as
    /// "nothing due" (the loop looks again after [`MAX_IDLE`]).
    fn scan(&self, in_flight: &HashMap<Id, RcptKey>, max: usize, max_mass: usize) -> DueScan {
        let skip: HashSet<RcptKey> = in_flight.values().copied().collect();
        let now = self.clock.now_ms();
        // Inline, not `spawn_blocking`: the schedule is in memory and the scan reads at most
        // `max` entries past those in flight (issue 13).
        match self.queue.due_streams(now, &skip, max, max_mass) {
            Ok(scan) => scan,
            Err(StoreError::Closed) => DueScan::default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the delivery schedule");
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
        // Boxed for the reason the listener boxes a session: a small task moves cheaply.
        Box::pin(async move { attempt(queue, ctx, metrics, due).await }.instrument(span))
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

/// One attempt for `due` on `ctx`, recorded. The recipient's destination is matched here,
/// once, to pick its lane:
/// - the local lane ([`local`]): `Route` — the route kind decides between http, odoo,
///   maildir, discard, reject and forward (which re-queues an SRS copy whose recipients
///   are relayed as a message of their own);
/// - the relay lane ([`relayed`]): `Relay` (plan, warming, SMTP, DSN to the sender) and
///   `SrsReturn` (a bounce sent on to the original sender of a forwarded message: plan
///   and SMTP only).
async fn attempt(queue: Queue, ctx: Arc<Context>, metrics: Metrics, due: Due) {
    // Two point reads of a message written moments ago (memtable or block cache): inline,
    // as a blocking-pool hop costs more wake-ups than the reads (issue 13).
    let (msg, body) = (queue.get(due.id), queue.body(due.id));
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
    let mut info = match (&ctx.observer, &body) {
        (Some(_), Some(b)) => MessageInfo::from_message(b),
        _ => MessageInfo::default(),
    };
    // The stored email type wins over what the headers suggest.
    info.email_type = msg.stream.as_str();
    let a = Attempt {
        ctx: &ctx,
        queue: &queue,
        metrics: &metrics,
        msg,
        rcpt,
        due,
        info,
        start: Instant::now(),
    };
    match &rcpt.dest {
        Destination::Route { .. } | Destination::Bounce { .. } => local::attempt(&a, body).await,
        Destination::Relay => relayed::attempt(&a, body, relayed::Job::Relayed).await,
        Destination::SrsReturn { to } => {
            relayed::attempt(&a, body, relayed::Job::SrsReturn { to }).await
        }
    }
}
