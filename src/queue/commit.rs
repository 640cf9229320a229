//! Group commit: every write to the queue goes through one dedicated thread, which takes
//! all requests waiting in its channel, writes each request's batch unsynced, then makes them
//! durable together with ONE WAL fsync (`flush_wal(true)`), and only then answers the
//! waiters. Fifty sessions finishing DATA at once cost one fsync, not fifty.
//!
//! Why a thread and not RocksDB's own write grouping: the group is formed from whatever is
//! queued when the previous fsync ends, so the batch size adapts to load with no timer, and
//! the single writer also serialises read-modify-write changes (a job reads the message meta
//! and builds its batch on this thread), so two outcomes for recipients of the same message
//! never overwrite each other.
//!
//! Not every change waits for the fsync: a delivery outcome ([`Durability::Lazy`]) is written
//! to the WAL (so a crash of the process keeps it) and answered at once; the next synced group
//! makes it durable. Only a crash of the machine can lose it, and losing it means the attempt
//! happens again — a duplicate, never a loss, as Postfix, which does not fsync a delivered
//! recipient either. It halves the fsyncs of a message delivered at once (issue 13).
//!
//! Requests reach the thread in batches: those submitted by the tasks that run in one turn
//! of the async runtime wait in [`Committer`]'s outbox and one deferred task sends them
//! together, so the thread, mostly idle between groups, is woken once per turn instead of
//! once per request (ctx switches of the thread 1.45 -> 1.26 per inbound message; server CPU
//! 0.203 -> 0.193 ms/msg, ab.sh 6 rounds, issue 13). Order is kept: one outbox, sent in
//! order. Outside a runtime a request is sent at once; [`Committer::stop`] sends what waits.
//!
//! A request whose waiter has gone (the enqueue deadline passed) before its turn is skipped,
//! so a peer that got `451` does not also get the message stored. Past that point a late
//! waiter can still lose the race: the message is then stored and delivered although the peer
//! was told to retry — a duplicate, never a loss (at-least-once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rocksdb::WriteBatch;
use tokio::sync::{Notify, oneshot};

use super::due::{DueIndex, Edit};
use super::hot::{HotMetas, MetaWrite};
use super::{RcptState, StoreError};
use crate::db::{Cf, Column};
use crate::metrics::Metrics;

/// Most requests sharing one fsync; bounds the latency of the first waiter in a group.
const MAX_GROUP: usize = 1024;

/// A recipient entering `to` (from `from`, or new): applied to the in-memory state counts
/// once the change is durable.
pub type Move = (Option<RcptState>, RcptState);

/// One atomic state change: a batch and the count moves it implies.
#[derive(Default)]
pub struct Change {
    pub batch: WriteBatch,
    pub moves: Vec<Move>,
    /// The batch's `d/` writes, mirrored into the in-memory schedule once it is written.
    pub due: Vec<Edit>,
    /// Recipients deleted with their message (retention): they leave the state counts.
    pub removed: Vec<RcptState>,
    /// Messages not yet done, and their bytes, that the batch adds (or removes).
    pub live: LiveDelta,
    /// The batch gives a message its retention entry (wakes the purge when retention is 0).
    pub finalized: bool,
    /// The batch's meta writes, mirrored into [`Shared::hot`] once it is written.
    pub metas: Vec<MetaWrite>,
}

/// A change of [`Live`] usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveDelta {
    pub messages: i64,
    pub bytes: i64,
}

impl LiveDelta {
    /// One message of `size` bytes enters (`sign` = 1) or leaves (`sign` = -1).
    pub fn message(size: u64, sign: i64) -> LiveDelta {
        LiveDelta {
            messages: sign,
            bytes: sign * i64::try_from(size).unwrap_or(i64::MAX),
        }
    }
}

/// One change can hold several messages (a failure and the DSN it owes): deltas add up.
impl std::ops::AddAssign for LiveDelta {
    fn add_assign(&mut self, other: LiveDelta) {
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

/// What `queue.max_messages` and `max_bytes` limit: messages not yet done (a recipient still
/// queued or deferred, or a DSN the bounce stage has not read) and the size of their bodies.
/// Finished messages waiting out `queue.retention` are not counted: the disk guard covers
/// them. Kept by the committer from each change, so admission is two atomic loads.
#[derive(Debug, Default)]
pub struct Live {
    pub messages: AtomicI64,
    pub bytes: AtomicI64,
}

/// When the waiter of a change is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the group's WAL fsync: what a `250` promises.
    #[default]
    Synced,
    /// Once written to the WAL, before any fsync: for changes whose loss in a machine crash
    /// only repeats work (a delivery outcome: the attempt runs again).
    Lazy,
}

/// Builds a change on the committer thread, reading current state from the DB if needed.
pub type Job = Box<dyn FnOnce(Cf<'_>) -> Result<Change, StoreError> + Send>;

/// What the committer thread and the [`Queue`](super::Queue) handles share.
pub struct Shared {
    /// The `queue` family of the server's one database.
    pub col: Column,
    pub counts: Mutex<HashMap<RcptState, u64>>,
    /// The `d/` index in memory: what the delivery scheduler reads.
    pub due: Mutex<DueIndex>,
    pub live: Live,
    /// Notified when a durable change gave a message its retention entry.
    pub finalized: Notify,
    /// The metas written last, decoded ([`super::hot`]).
    pub hot: HotMetas,
}

impl Shared {
    /// Runs `f` on the queue's family, or fails with `Closed`.
    pub fn with_db<T>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.col.with(f)
    }

    fn apply(&self, w: &Written) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut leave = |st: &RcptState| {
            let n = counts.entry(*st).or_insert(0);
            *n = n.saturating_sub(1);
        };
        for (from, _) in &w.moves {
            from.iter().for_each(&mut leave);
        }
        w.removed.iter().for_each(leave);
        for (_, to) in &w.moves {
            *counts.entry(*to).or_insert(0) += 1;
        }
        self.live
            .messages
            .fetch_add(w.live.messages, Ordering::Relaxed);
        self.live.bytes.fetch_add(w.live.bytes, Ordering::Relaxed);
    }
}

type Done = oneshot::Sender<Result<(), StoreError>>;

/// What a written change does to the in-memory counts once it is durable.
struct Written {
    moves: Vec<Move>,
    removed: Vec<RcptState>,
    live: LiveDelta,
    finalized: bool,
}

enum Msg {
    Commit(Job, Durability, Done),
    Close,
}

/// Handle to the committer thread.
pub struct Committer {
    /// Requests on their way to the thread: the tasks that run in one turn of the runtime
    /// submit into `pending`, and one deferred task sends them all, so the idle thread is
    /// woken (a futex call and a context switch) once per turn, not once per request.
    out: Arc<Mutex<Outbox>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Outbox {
    tx: mpsc::Sender<Msg>,
    pending: Vec<Msg>,
}

impl Outbox {
    fn flush(&mut self) {
        for msg in self.pending.drain(..) {
            // A send error means the thread has stopped: the request's `done` is dropped
            // with it and its receiver reports that as `Closed`.
            let _ = self.tx.send(msg);
        }
    }
}

fn outbox(out: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    out.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Committer {
    pub fn spawn(shared: Arc<Shared>, metrics: Metrics) -> Result<Committer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mxgate-commit".into())
            .spawn(move || run(&shared, &rx, &metrics))
            .map_err(StoreError::Thread)?;
        Ok(Committer {
            out: Arc::new(Mutex::new(Outbox {
                tx,
                pending: Vec::new(),
            })),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `job`; the receiver resolves once its change is durable (or failed). Dropping
    /// the receiver before the job's turn withdraws it.
    pub fn submit(
        &self,
        job: Job,
        durability: Durability,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let mut out = outbox(&self.out);
        out.pending.push(Msg::Commit(job, durability, done));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if out.pending.len() == 1 => {
                let weak = Arc::downgrade(&self.out);
                runtime.spawn(async move {
                    // To the back of the runtime's queue: whatever else is ready this turn
                    // submits first and goes with this send.
                    tokio::task::yield_now().await;
                    if let Some(out) = weak.upgrade() {
                        outbox(&out).flush();
                    }
                });
            }
            Ok(_) => {} // a send is already on its way
            Err(_) => out.flush(),
        }
        rx
    }

    /// Commits everything already submitted, then stops the thread and waits for it.
    pub fn stop(&self) {
        {
            let mut out = outbox(&self.out);
            out.flush();
            let _ = out.tx.send(Msg::Close);
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::warn!("queue committer thread panicked");
        }
    }
}

fn run(shared: &Shared, rx: &mpsc::Receiver<Msg>, metrics: &Metrics) {
    let mut group = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut closing = false;
        match first {
            Msg::Commit(job, durability, done) => group.push((job, durability, done)),
            Msg::Close => closing = true,
        }
        while !closing && group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Msg::Commit(job, durability, done)) => group.push((job, durability, done)),
                Ok(Msg::Close) => closing = true,
                Err(_) => break,
            }
        }
        if !group.is_empty() {
            commit_group(shared, std::mem::take(&mut group), metrics);
        }
        if closing {
            return;
        }
    }
}

type Request = (Job, Durability, Done);

fn commit_group(shared: &Shared, group: Vec<Request>, metrics: &Metrics) {
    let mut group = Some(group);
    let done = shared.with_db(|q| {
        if let Some(group) = group.take() {
            write_group(shared, q, group, metrics);
        }
        Ok(())
    });
    if let (Err(_), Some(group)) = (done, group) {
        for (_, _, done) in group {
            let _ = done.send(Err(StoreError::Closed));
        }
    }
}

/// Writes the group's changes unsynced, answers the lazy ones, then makes the synced ones
/// durable with one WAL fsync (none when the group holds only lazy changes).
fn write_group(shared: &Shared, q: Cf<'_>, group: Vec<Request>, metrics: &Metrics) {
    let mut written = Vec::with_capacity(group.len());
    let mut finalized = false;
    for (job, durability, done) in group {
        if done.is_closed() {
            continue; // the waiter gave up: do not store what it was told failed
        }
        let result = job(q).and_then(|change| {
            q.write(change.batch, false)?;
            // Before the due entries: an attempt for one finds the meta it came with.
            shared.hot.apply(change.metas);
            if !change.due.is_empty() {
                // Mirrored at write time, as the scheduler's RocksDB reads saw it before.
                shared
                    .due
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply(&change.due);
            }
            Ok(Written {
                moves: change.moves,
                removed: change.removed,
                live: change.live,
                finalized: change.finalized,
            })
        });
        match (result, durability) {
            (Ok(w), Durability::Lazy) => {
                // Counts mirror what the DB holds: the write is in it now.
                shared.apply(&w);
                finalized |= w.finalized;
                let _ = done.send(Ok(()));
            }
            (Ok(w), Durability::Synced) => written.push((w, done)),
            (Err(e), _) => {
                let _ = done.send(Err(e));
            }
        }
    }
    if written.is_empty() {
        if finalized {
            shared.finalized.notify_one();
        }
        return;
    }
    // The one fsync of this group: every batch above becomes durable together (and with
    // them whatever other stores wrote unsynced to the shared WAL meanwhile).
    let synced = q.sync_wal();
    metrics.store_commit(written.len());
    // Counts mirror what the DB holds, and a failed sync leaves the writes in it.
    for (w, _) in &written {
        shared.apply(w);
    }
    if finalized || written.iter().any(|(w, _)| w.finalized) {
        shared.finalized.notify_one();
    }
    match synced {
        Ok(()) => {
            for (_, done) in written {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue WAL sync failed");
            for (_, done) in written {
                let _ = done.send(Err(StoreError::Rocks(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Family;

    fn committer(dir: &std::path::Path) -> Committer {
        let col = Column::standalone(dir, Family::Queue).expect("open");
        let shared = Arc::new(Shared {
            col,
            counts: Mutex::new(HashMap::new()),
            due: Mutex::new(DueIndex::default()),
            live: Live::default(),
            finalized: Notify::new(),
            hot: HotMetas::default(),
        });
        Committer::spawn(shared, Metrics::new()).expect("spawn")
    }

    /// A job that notes `i` in `log` when the committer runs it.
    fn noting(log: &Arc<Mutex<Vec<usize>>>, i: usize) -> Job {
        let log = log.clone();
        Box::new(move |_| {
            log.lock().expect("lock").push(i);
            Ok(Change::default())
        })
    }

    /// `n` noting jobs, mixed synced and lazy, submitted without an await between them.
    fn submit_all(
        c: &Committer,
        log: &Arc<Mutex<Vec<usize>>>,
        n: usize,
    ) -> Vec<oneshot::Receiver<Result<(), StoreError>>> {
        (0..n)
            .map(|i| c.submit(noting(log, i), durability(i)))
            .collect()
    }

    fn durability(i: usize) -> Durability {
        if i.is_multiple_of(3) {
            Durability::Lazy
        } else {
            Durability::Synced
        }
    }

    #[tokio::test]
    async fn requests_submitted_in_one_turn_run_in_submission_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = committer(dir.path());
        let log = Arc::new(Mutex::new(Vec::new()));
        let waits = submit_all(&c, &log, 60);
        for w in waits {
            assert!(matches!(w.await, Ok(Ok(()))));
        }
        assert_eq!(*log.lock().expect("lock"), (0..60).collect::<Vec<_>>());
        c.stop();
    }

    #[tokio::test]
    async fn stop_commits_what_is_still_on_its_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = committer(dir.path());
        let log = Arc::new(Mutex::new(Vec::new()));
        let waits = submit_all(&c, &log, 10);
        // No await between the submits and the stop: the deferred send has not run.
        c.stop();
        assert_eq!(*log.lock().expect("lock"), (0..10).collect::<Vec<_>>());
        for w in waits {
            assert!(matches!(w.await, Ok(Ok(()))));
        }
    }

    #[test]
    fn outside_a_runtime_a_request_is_sent_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = committer(dir.path());
        let log = Arc::new(Mutex::new(Vec::new()));
        let wait = c.submit(noting(&log, 7), Durability::Synced);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait.blocking_recv());
        });
        let answer = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("answered without a runtime to send it");
        assert!(matches!(answer, Ok(Ok(()))));
        assert_eq!(*log.lock().expect("lock"), [7]);
        c.stop();
    }
}
