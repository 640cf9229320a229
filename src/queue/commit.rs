//! Group commit: every write to the queue goes through one dedicated writer thread, which
//! takes all requests waiting in its channel and writes each request's batch unsynced; a
//! second thread, the [`Syncer`], makes whatever has been written durable with ONE WAL fsync
//! (`flush_wal(true)`) per round and only then answers the waiters. Fifty sessions finishing
//! DATA at once cost one fsync, not fifty, and the writer keeps writing while an fsync runs,
//! so the next round starts the moment the last one ends.
//!
//! Why threads and not RocksDB's own write grouping: a round syncs whatever was written
//! while the previous one ran, so the batch size adapts to load with no timer, and
//! the single writer also serialises read-modify-write changes (a job reads the message meta
//! and builds its batch on this thread), so two outcomes for recipients of the same message
//! never overwrite each other.
//!
//! Not every change waits for the fsync: a delivery outcome ([`Durability::Lazy`]) is written
//! to the WAL (so a crash of the process keeps it) and answered at once (or, when changes
//! written before it still wait for their fsync, together with them, so the in-memory counts
//! follow write order); the next fsync makes it durable. Only a crash of the machine can lose it, and losing it means the attempt
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
use std::sync::{Arc, Condvar, Mutex, PoisonError};
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

/// Handle to the committer's two threads: the writer (`mxgate-commit`) and the syncer
/// (`mxgate-sync`).
pub struct Committer {
    /// Requests on their way to the thread: the tasks that run in one turn of the runtime
    /// submit into `pending`, and one deferred task sends them all, so the idle thread is
    /// woken (a futex call and a context switch) once per turn, not once per request.
    out: Arc<Mutex<Outbox>>,
    /// The writer, then the syncer: joined in that order.
    threads: Mutex<Vec<JoinHandle<()>>>,
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
        let syncer = Arc::new(Syncer::default());
        let sync = {
            let (shared, syncer, metrics) = (shared.clone(), syncer.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("mxgate-sync".into())
                .spawn(move || syncer.run(&shared, &metrics))
                .map_err(StoreError::Thread)?
        };
        let write = {
            let syncer = syncer.clone();
            std::thread::Builder::new()
                .name("mxgate-commit".into())
                .spawn(move || run(&shared, &rx, &syncer))
        };
        let write = match write {
            Ok(handle) => handle,
            Err(e) => {
                syncer.close();
                let _ = sync.join();
                return Err(StoreError::Thread(e));
            }
        };
        Ok(Committer {
            out: Arc::new(Mutex::new(Outbox {
                tx,
                pending: Vec::new(),
            })),
            threads: Mutex::new(vec![write, sync]),
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

    /// Commits everything already submitted, then stops the threads and waits for them.
    pub fn stop(&self) {
        {
            let mut out = outbox(&self.out);
            out.flush();
            let _ = out.tx.send(Msg::Close);
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        // The writer first: when it ends it closes the syncer, which answers the rest.
        for handle in threads {
            if handle.join().is_err() {
                tracing::warn!("queue committer thread panicked");
            }
        }
    }
}

fn run(shared: &Shared, rx: &mpsc::Receiver<Msg>, syncer: &Syncer) {
    // However the writer ends (stop, every handle dropped, a panic), the syncer answers
    // what was handed to it and ends too, releasing the database.
    struct CloseSyncer<'a>(&'a Syncer);
    impl Drop for CloseSyncer<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = CloseSyncer(syncer);
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
            commit_group(shared, std::mem::take(&mut group), syncer);
        }
        if closing {
            return;
        }
    }
}

type Request = (Job, Durability, Done);

fn commit_group(shared: &Shared, group: Vec<Request>, syncer: &Syncer) {
    let mut group = Some(group);
    let done = shared.with_db(|q| {
        if let Some(group) = group.take() {
            write_group(shared, q, group, syncer);
        }
        Ok(())
    });
    if let (Err(_), Some(group)) = (done, group) {
        for (_, _, done) in group {
            let _ = done.send(Err(StoreError::Closed));
        }
    }
}

/// Writes the group's changes unsynced, in order, and hands them to the [`Syncer`]; a lazy
/// change with nothing handed over before it is answered here at once.
fn write_group(shared: &Shared, q: Cf<'_>, group: Vec<Request>, syncer: &Syncer) {
    let mut handed = Vec::with_capacity(group.len());
    // Counts must follow write order: a lazy change goes through the syncer too when an
    // earlier change still waits there (its outcome could leave a state that change enters).
    let mut behind = !syncer.is_idle();
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
            (Ok(w), Durability::Lazy) if !behind => {
                // Counts mirror what the DB holds: the write is in it now.
                shared.apply(&w);
                if w.finalized {
                    shared.finalized.notify_one();
                }
                let _ = done.send(Ok(()));
            }
            (Ok(w), durability) => {
                handed.push((w, durability, done));
                behind = true;
            }
            (Err(e), _) => {
                let _ = done.send(Err(e));
            }
        }
    }
    syncer.hand(handed);
}

/// The second half of group commit: makes written changes durable with one WAL fsync per
/// round, applies them to the in-memory counts in write order, and answers their waiters.
///
/// A thread of its own so the writer never waits for an fsync: while one runs, the writer
/// already writes the changes that arrive meanwhile, and the next fsync starts the moment
/// this one ends, covering all of them. With the writer doing both, each round was its
/// writes plus its fsync, and a change arriving during an fsync waited for the rest of it,
/// then for the writes, then for its own (issue 13: on the 2-core VM the fsync wait was a
/// third of an inbound message's time; with the data dir on tmpfs, 7,700 msg/s instead of
/// 5,250). RocksDB lets writes proceed during `SyncWAL` and runs one sync at a time, which
/// is this thread.
#[derive(Default)]
struct Syncer {
    state: Mutex<SyncState>,
    ready: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Written changes not yet synced, in write order.
    waiting: Vec<(Written, Durability, Done)>,
    /// A round is running: its changes are not applied yet.
    busy: bool,
    /// The thread waits for work: only then does a hand-over cost a wake-up (a syscall).
    sleeping: bool,
    closing: bool,
}

impl Syncer {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nothing written waits to be applied.
    fn is_idle(&self) -> bool {
        let state = self.lock();
        !state.busy && state.waiting.is_empty()
    }

    fn hand(&self, written: Vec<(Written, Durability, Done)>) {
        if written.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.waiting.extend(written);
        if state.sleeping {
            drop(state);
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_one();
    }

    fn run(&self, shared: &Shared, metrics: &Metrics) {
        loop {
            let round = {
                let mut state = self.lock();
                while state.waiting.is_empty() && !state.closing {
                    state.sleeping = true;
                    state = self
                        .ready
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.sleeping = false;
                }
                if state.waiting.is_empty() {
                    return; // closing, and everything handed over is answered
                }
                state.busy = true;
                std::mem::take(&mut state.waiting)
            };
            self.sync_round(shared, metrics, round);
        }
    }

    fn sync_round(
        &self,
        shared: &Shared,
        metrics: &Metrics,
        round: Vec<(Written, Durability, Done)>,
    ) {
        let synced = round
            .iter()
            .filter(|(_, d, _)| *d == Durability::Synced)
            .count();
        // The one fsync of this round: every change above was written before it started,
        // so it covers them all (and whatever the writer adds meanwhile, unannounced).
        let result = if synced == 0 {
            Ok(())
        } else {
            let r = shared.with_db(|q| q.sync_wal().map_err(StoreError::Rocks));
            metrics.store_commit(synced);
            r
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "queue WAL sync failed");
        }
        // Counts mirror what the DB holds, and a failed sync leaves the writes in it.
        let mut finalized = false;
        for (w, _, _) in &round {
            shared.apply(w);
            finalized |= w.finalized;
        }
        if finalized {
            shared.finalized.notify_one();
        }
        self.lock().busy = false;
        for (_, durability, done) in round {
            let answer = match (&result, durability) {
                (_, Durability::Lazy) | (Ok(()), _) => Ok(()),
                (Err(StoreError::Rocks(e)), _) => Err(StoreError::Rocks(e.clone())),
                (Err(_), _) => Err(StoreError::Closed),
            };
            let _ = done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Family;

    fn committer(dir: &std::path::Path) -> Committer {
        committer_and_shared(dir).0
    }

    fn committer_and_shared(dir: &std::path::Path) -> (Committer, Arc<Shared>) {
        let col = Column::standalone(dir, Family::Queue).expect("open");
        let shared = Arc::new(Shared {
            col,
            counts: Mutex::new(HashMap::new()),
            due: Mutex::new(DueIndex::default()),
            live: Live::default(),
            finalized: Notify::new(),
            hot: HotMetas::default(),
        });
        let c = Committer::spawn(shared.clone(), Metrics::new()).expect("spawn");
        (c, shared)
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

    /// A recipient enqueued (synced) and its outcome (lazy) in one turn: the outcome is
    /// written after the enqueue, but the enqueue waits for the syncer's fsync while a lazy
    /// change is otherwise applied at once. Its count move must still come after the
    /// enqueue's, or `queued` would go 0 -> 0 (saturating) -> 1 and stay wrong.
    #[tokio::test]
    async fn a_lazy_change_behind_a_synced_one_is_counted_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, shared) = committer_and_shared(dir.path());
        let moving = |m: Move| -> Job {
            Box::new(move |_| {
                Ok(Change {
                    moves: vec![m],
                    ..Change::default()
                })
            })
        };
        let enqueued = c.submit(moving((None, RcptState::Queued)), Durability::Synced);
        let sent = c.submit(
            moving((Some(RcptState::Queued), RcptState::Sent)),
            Durability::Lazy,
        );
        assert!(matches!(enqueued.await, Ok(Ok(()))));
        assert!(matches!(sent.await, Ok(Ok(()))));
        let counts = shared.counts.lock().expect("counts").clone();
        let n = |st| counts.get(&st).copied().unwrap_or(0);
        assert_eq!((n(RcptState::Queued), n(RcptState::Sent)), (0, 1));
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
