//! Stage ④ — the durable queue: a [`NewMessage`] from a session in, a [`QueueId`] out, and
//! per-recipient delivery state that [`delivery`](crate::delivery) reads and updates.
//!
//! Invariants:
//! - [`Queue::enqueue`] returns `Ok` only after the message's `WriteBatch` is in a fsync'd WAL
//!   (group commit, [`commit`]); past the enqueue deadline it fails — the session answers
//!   `451 4.4.2`, never a late `250`.
//! - Every state change is one `WriteBatch` (meta + index keys together, [`keys`]); all writes
//!   go through one committer thread, which also serialises read-modify-write.
//! - Pending recipients (`queued`, `deferred`) are in the `d/` schedule index at their next
//!   attempt time. A `d/` key is only removed when an outcome is recorded, so a crash during a
//!   delivery re-delivers after restart: at-least-once, never lost.
//!
//! API for the rest of the server:
//! - session: [`Queue::enqueue`];
//! - delivery worker: [`Queue::due`] (blocking), [`Queue::get`], [`Queue::body`],
//!   [`Queue::record`], [`Queue::hold`], [`Queue::changed`] (wakes on enqueue/retry),
//!   [`Queue::forget_due`];
//! - admin API / CLI: [`Queue::list`], [`Queue::get`], [`Queue::retry`],
//!   [`Queue::retry_failed`], [`Queue::cancel`], [`Queue::counts`] (→ `mxgate_queue_messages`);
//! - bounce stage: [`Queue::pending_bounces`], [`Queue::bounce_processed`];
//! - server shutdown: [`Queue::close`] (last; idempotent).
//!
//! Read methods (`get`, `body`, `list`, `due`, `pending_bounces`) are short blocking RocksDB
//! reads; `counts` is in memory. Writes are `async` and never block the runtime.

mod commit;
mod keys;
pub mod model;
pub mod schedule;
mod store;
pub mod transition;

pub use keys::RcptKey;
pub use model::{NewMessage, QueuedMessage, RcptState, Recipient, Stream};
pub use store::{Due, DueScan};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rocksdb::DB;
use tokio::sync::{Notify, oneshot};

use crate::clock::Clock;
use crate::config::QueueConfig;
use crate::delivery::Outcome;
use crate::delivery::outcome::Hold;
use crate::envelope::QueueId;
use crate::metrics::Metrics;
use crate::routing::Destination;
use commit::{Change, Committer, Shared};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create queue directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt queue record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("cannot encode queue record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    #[error("store did not commit within {0:?}")]
    Timeout(Duration),
    #[error("queue is closed")]
    Closed,
    #[error("cannot start the queue committer thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a message needs 1 to 65535 recipients, got {0}")]
    Recipients(usize),
}

impl EnqueueError {
    /// Whatever went wrong, the peer may retry later: `451 4.4.2` (no internals leak).
    pub fn reply(&self) -> crate::session::reply::Reply {
        crate::session::reply::STORE_UNAVAILABLE
    }
}

/// Store tunables that are not (yet) config keys.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// Longest a store write may take before the caller gets an error. Shorter than the
    /// client's 10-minute DATA timeout (RFC 5321 §4.5.3.2.6) so the peer gets 451, not a drop.
    pub commit_deadline: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            commit_deadline: Duration::from_secs(30),
        }
    }
}

/// Handle to the RocksDB-backed queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    committer: Committer,
    cfg: QueueConfig,
    clock: Clock,
    opts: QueueOptions,
    /// Wakes the delivery scheduler when something became due now.
    changed: Notify,
    /// Serialises schedule scans (see [`Queue::due_streams`]).
    scanning: Mutex<()>,
}

impl Drop for Inner {
    /// The last handle gone without `close`: stop the thread so the DB (and its lock file)
    /// is released now, not whenever the thread notices.
    fn drop(&mut self) {
        self.committer.stop();
    }
}

impl Queue {
    /// Opens (or creates) the store in `dir`; pending recipients are resumed from its index.
    pub fn open(
        dir: &Path,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Queue, StoreError> {
        Queue::open_with(dir, cfg, clock, metrics, QueueOptions::default())
    }

    pub fn open_with(
        dir: &Path,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
        opts: QueueOptions,
    ) -> Result<Queue, StoreError> {
        let db = store::open_db(dir)?;
        let counts = store::load_counts(&db)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(db)),
            counts: Mutex::new(counts),
            due_floor: Mutex::new(commit::DueFloor::default()),
        });
        let committer = Committer::spawn(shared.clone(), metrics)?;
        let inner = Inner {
            shared,
            committer,
            cfg,
            clock,
            opts,
            changed: Notify::new(),
            scanning: Mutex::new(()),
        };
        Ok(Queue {
            inner: Arc::new(inner),
        })
    }

    /// Stores the message durably (fsync'd WAL, group commit); only then may the session say 250.
    pub async fn enqueue(&self, msg: NewMessage) -> Result<QueueId, EnqueueError> {
        self.enqueue_stream(msg, Stream::Transactional).await
    }

    /// As [`Queue::enqueue`], for a message of email type `stream`.
    pub async fn enqueue_stream(
        &self,
        msg: NewMessage,
        stream: Stream,
    ) -> Result<QueueId, EnqueueError> {
        let n = msg.recipients.len();
        if n == 0 || n > usize::from(u16::MAX) {
            return Err(EnqueueError::Recipients(n));
        }
        let id = QueueId::generate();
        let mut stored = new_meta(id, self.inner.clock.now_ms(), &msg);
        stored.stream = stream;
        let change = store::enqueue(&stored, &msg.body)?;
        self.commit(move |_| Ok((change, ()))).await?;
        self.inner.changed.notify_one();
        Ok(id)
    }

    /// Runs `f` on the committer thread and waits (up to the deadline) until its change is durable.
    async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DB) -> Result<(Change, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (value_tx, value_rx) = oneshot::channel();
        let done = self.inner.committer.submit(Box::new(move |db| {
            let (change, value) = f(db)?;
            let _ = value_tx.send(value);
            Ok(change)
        }));
        let deadline = self.inner.opts.commit_deadline;
        match tokio::time::timeout(deadline, done).await {
            Err(_) => Err(StoreError::Timeout(deadline)),
            Ok(Err(_)) => Err(StoreError::Closed),
            Ok(Ok(result)) => {
                result?;
                value_rx.await.map_err(|_| StoreError::Closed)
            }
        }
    }

    fn read<T>(&self, what: &str, f: impl FnOnce(&DB) -> Result<T, StoreError>) -> Option<T> {
        match self.inner.shared.with_db(f) {
            Ok(v) => Some(v),
            Err(StoreError::Closed) => None,
            Err(e) => {
                tracing::warn!(error = %e, "queue read failed: {what}");
                None
            }
        }
    }

    /// A message's metadata and recipients.
    pub fn get(&self, id: QueueId) -> Option<QueuedMessage> {
        self.read("get", |db| store::read_meta(db, id)).flatten()
    }

    /// The raw message as it will be delivered.
    pub fn body(&self, id: QueueId) -> Option<Vec<u8>> {
        self.read("body", |db| store::read_body(db, id)).flatten()
    }

    /// Up to `limit` messages in arrival order; with `state`, those with a recipient in it.
    pub fn list(&self, state: Option<RcptState>, limit: usize) -> Vec<QueuedMessage> {
        self.read("list", |db| store::list(db, state, limit))
            .unwrap_or_default()
    }

    /// Recipients per state (kept in memory, exact: updated when each change is durable).
    pub fn counts(&self) -> HashMap<RcptState, u64> {
        self.inner
            .shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Messages holding an unprocessed DSN (`bounce+TOKEN` recipients), oldest first.
    pub fn pending_bounces(&self) -> Vec<QueueId> {
        self.read("pending bounces", store::pending_bounces)
            .unwrap_or_default()
    }

    /// The bounce stage has processed this DSN: drop it from [`Queue::pending_bounces`].
    pub async fn bounce_processed(&self, id: QueueId) -> Result<(), StoreError> {
        self.commit(move |_| Ok((store::bounce_processed(id), ())))
            .await
    }

    /// Blocking: due recipients not in `in_flight`, earliest first, at most `max`.
    pub fn due(
        &self,
        now_ms: u64,
        in_flight: &HashSet<RcptKey>,
        max: usize,
    ) -> Result<DueScan, StoreError> {
        self.due_streams(now_ms, in_flight, max, max)
    }

    /// As [`Queue::due`], with at most `max_mass` of the entries being `mass` mail: the
    /// others are passed over, so transactional mail due later is still found.
    pub fn due_streams(
        &self,
        now_ms: u64,
        in_flight: &HashSet<RcptKey>,
        max: usize,
        max_mass: usize,
    ) -> Result<DueScan, StoreError> {
        let shared = &self.inner.shared;
        let lock = || {
            shared
                .due_floor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        // One scan at a time (the scheduler is the only caller in production), so the
        // floor bookkeeping below sees every write that raced it.
        let _one = self
            .inner
            .scanning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_ms = {
            let mut floor = lock();
            floor.lowered = u64::MAX;
            match floor.last_full {
                Some(at) if at.elapsed() < commit::FULL_SCAN_EVERY => floor.ms.min(now_ms),
                _ => {
                    floor.last_full = Some(std::time::Instant::now());
                    0
                }
            }
        };
        let scan =
            shared.with_db(|db| store::due(db, from_ms, now_ms, in_flight, max, max_mass))?;
        let mut floor = lock();
        // Entries written during the scan may be invisible to it: never above them.
        floor.ms = scan
            .first_due_ms
            .unwrap_or(u64::MAX)
            .min(now_ms)
            .min(floor.lowered);
        Ok(scan)
    }

    /// Resolves when a recipient may have become due now (enqueue, retry). A wake-up sent
    /// while nobody waits is kept for the next call, so none is lost.
    pub async fn changed(&self) {
        self.inner.changed.notified().await
    }

    /// Records one attempt's outcome for recipient `rcpt` of `id` in one batch: attempts + 1,
    /// last reply, and the next state (sent, bounced, deferred with backoff, or expired).
    /// Returns the new state, or `None` when the recipient was no longer pending (cancelled
    /// meanwhile): then nothing changes.
    pub async fn record(
        &self,
        id: QueueId,
        rcpt: u16,
        outcome: &Outcome,
    ) -> Result<Option<RcptState>, StoreError> {
        let outcome = outcome.clone();
        let cfg = self.inner.cfg.clone();
        let now_ms = self.inner.clock.now_ms();
        let jitter = schedule::random_jitter();
        self.commit(move |db| {
            store::update(db, id, |m| {
                let at = transition::Attempt {
                    cfg: &cfg,
                    received_ms: m.received_ms,
                    now_ms,
                    jitter,
                };
                let r = m.recipients.get_mut(usize::from(rcpt))?;
                transition::record(r, &outcome, &at).then_some(r.state)
            })
        })
        .await
    }

    /// As [`Queue::record`], and in the same atomic write the message `follow` makes from
    /// the message as recorded and the recipient's new state (the DSN a failure owes the
    /// sender): a crash can never keep the failure and lose the DSN. Returns the new state
    /// and the id of the follow-up message, if one was queued.
    pub async fn record_then(
        &self,
        id: QueueId,
        rcpt: u16,
        outcome: &Outcome,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let outcome = outcome.clone();
        let cfg = self.inner.cfg.clone();
        let now_ms = self.inner.clock.now_ms();
        let jitter = schedule::random_jitter();
        self.commit_then(
            id,
            now_ms,
            move |m| {
                let at = transition::Attempt {
                    cfg: &cfg,
                    received_ms: m.received_ms,
                    now_ms,
                    jitter,
                };
                let r = m.recipients.get_mut(usize::from(rcpt))?;
                transition::record(r, &outcome, &at).then_some(r.state)
            },
            follow,
        )
        .await
    }

    /// A warming cap or provider rate holds recipient `rcpt` of `id` until its window opens
    /// ([`transition::hold`]): `deferred` with the hold's reason, no attempt counted, or
    /// `expired` past `queue.expire_after`; with the follow-up message that state calls
    /// for, written atomically as in [`Queue::record_then`]. `None` when the recipient was
    /// no longer pending.
    pub async fn hold_then(
        &self,
        id: QueueId,
        rcpt: u16,
        hold: &Hold,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let hold = hold.clone();
        let cfg = self.inner.cfg.clone();
        let now_ms = self.inner.clock.now_ms();
        self.commit_then(
            id,
            now_ms,
            move |m| {
                let at = transition::Attempt {
                    cfg: &cfg,
                    received_ms: m.received_ms,
                    now_ms,
                    jitter: 0.0,
                };
                let r = m.recipients.get_mut(usize::from(rcpt))?;
                transition::hold(r, &hold, &at).then_some(r.state)
            },
            follow,
        )
        .await
    }

    /// One recipient transition of message `id` plus the follow-up message it calls for,
    /// in one batch.
    async fn commit_then(
        &self,
        id: QueueId,
        now_ms: u64,
        transition: impl FnOnce(&mut QueuedMessage) -> Option<RcptState> + Send + 'static,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let done = self
            .commit(move |db| {
                let (mut change, state) = store::update(db, id, |m| {
                    let state = transition(m)?;
                    Some((state, follow(m, state)))
                })?;
                let Some((state, new)) = state else {
                    return Ok((change, None));
                };
                let mut queued = None;
                if let Some(new) = new.filter(|n| !n.recipients.is_empty()) {
                    let new_id = QueueId::generate();
                    let meta = new_meta(new_id, now_ms, &new);
                    store::enqueue_into(&mut change, &meta, &new.body)?;
                    queued = Some(new_id);
                }
                Ok((change, Some((state, queued))))
            })
            .await?;
        if done.is_some_and(|(_, q)| q.is_some()) {
            self.inner.changed.notify_one();
        }
        Ok(done)
    }

    /// Requeues the message's `deferred`, `bounced` and `expired` recipients, due now.
    /// Returns how many were requeued; `NotFound` for an unknown id.
    pub async fn retry(&self, id: QueueId) -> Result<usize, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        let n = self
            .commit(move |db| {
                store::update(db, id, |m| apply_all(m, |r| transition::retry(r, now_ms)))
            })
            .await?;
        if n > 0 {
            self.inner.changed.notify_one();
        }
        Ok(n)
    }

    /// [`Queue::retry`] for every message with a recipient `deferred`, `bounced` or `expired`.
    /// Returns the number of recipients requeued.
    pub async fn retry_failed(&self) -> Result<usize, StoreError> {
        let me = self.clone();
        let ids =
            tokio::task::spawn_blocking(move || me.inner.shared.with_db(store::retryable_ids))
                .await
                .map_err(|_| StoreError::Closed)??;
        let mut total = 0;
        // In chunks: each chunk's retries are submitted together and share fsyncs.
        for chunk in ids.chunks(256) {
            let results = futures::future::join_all(chunk.iter().map(|id| self.retry(*id))).await;
            for r in results {
                match r {
                    Ok(n) => total += n,
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Cancels the message's pending recipients. Returns how many; `NotFound` for an unknown id.
    pub async fn cancel(&self, id: QueueId) -> Result<usize, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        self.commit(move |db| {
            store::update(db, id, |m| apply_all(m, |r| transition::cancel(r, now_ms)))
        })
        .await
    }

    /// A DSN arrived for recipient `rcpt` of `id` (VERP token): the recipient becomes
    /// `bounced` with the category and the remote words, even if it was `sent` (the remote
    /// MTA accepted it, then failed later). Returns the new state, or `None` when the
    /// recipient is already final in another way (cancelled, expired, bounced).
    pub async fn bounce_reported(
        &self,
        id: QueueId,
        rcpt: u16,
        category: Option<String>,
        reply: String,
    ) -> Result<Option<RcptState>, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        self.commit(move |db| {
            store::update(db, id, |m| {
                let r = m.recipients.get_mut(usize::from(rcpt))?;
                transition::bounce_reported(r, category, reply, now_ms).then_some(r.state)
            })
        })
        .await
    }

    /// Drops a `d/` entry that matches no pending recipient (see [`store::forget_due`]).
    pub async fn forget_due(&self, due: Due) -> Result<(), StoreError> {
        self.commit(move |db| Ok((store::forget_due(db, due)?, ())))
            .await
    }

    /// Commits what is queued, stops the committer, flushes memtables and closes RocksDB.
    /// Every later call fails with `Closed` (reads return nothing). Idempotent.
    pub fn close(&self) {
        self.inner.committer.stop();
        let db = self
            .inner
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = db {
            // Not needed for durability (the WAL is synced); it makes the next open faster.
            if let Err(e) = db.flush() {
                tracing::warn!(error = %e, "queue flush at close failed");
            }
        }
    }
}

fn apply_all(m: &mut QueuedMessage, mut f: impl FnMut(&mut Recipient) -> bool) -> usize {
    m.recipients.iter_mut().map(|r| usize::from(f(r))).sum()
}

/// The stored form of a new message. `bounce+TOKEN` recipients are not delivered anywhere:
/// they are `sent` at once ("stored for bounce processing") and marked for the bounce stage.
fn new_meta(id: QueueId, now_ms: u64, msg: &NewMessage) -> QueuedMessage {
    let recipients = msg
        .recipients
        .iter()
        .map(|(addr, dest)| {
            let bounce = matches!(dest, Destination::Bounce { .. });
            Recipient {
                address: addr.to_string(),
                dest: dest.clone(),
                state: if bounce {
                    RcptState::Sent
                } else {
                    RcptState::Queued
                },
                attempts: 0,
                next_attempt_ms: now_ms,
                last_reply: bounce.then(|| transition::STORED_FOR_BOUNCE.to_string()),
                category: None,
                updated_ms: now_ms,
            }
        })
        .collect();
    QueuedMessage {
        id,
        received_ms: now_ms,
        listener: msg.listener,
        peer_ip: msg.peer_ip,
        helo: msg.helo.clone(),
        mail_from: msg.mail_from.to_string(),
        size: msg.body.len() as u64,
        recipients,
        stream: Stream::Transactional,
    }
}
