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
//!   delivery re-delivers after restart: at-least-once, never lost. The scheduler reads a
//!   copy of that index kept in memory by the committer ([`due`]), loaded at open.
//!
//! API for the rest of the server:
//! - session: [`Queue::enqueue`];
//! - delivery worker: [`Queue::due`], [`Queue::get`], [`Queue::body`],
//!   [`Queue::record`], [`Queue::hold_then`], [`Queue::changed`] (wakes on enqueue/retry),
//!   [`Queue::forget_due`];
//! - admin API / CLI: [`Queue::list`], [`Queue::get`], [`Queue::retry`],
//!   [`Queue::retry_failed`], [`Queue::cancel`], [`Queue::counts`] (→ `mxgate_queue_messages`);
//! - bounce stage: [`Queue::pending_bounces`], [`Queue::bounce_processed`];
//! - sessions, before MAIL and RCPT: [`Queue::admit`] (`queue.max_messages`, `max_bytes`,
//!   `min_free_disk` → `452 4.3.1`, [`quota`]);
//! - background tasks the server runs: [`Queue::run_retention`] (deletes finished messages
//!   `queue.retention` after their last transition, [`purger`]) and [`Queue::watch_disk`];
//! - server shutdown: [`Queue::close`] (last; idempotent).
//!
//! Read methods (`get`, `body`, `list`, `pending_bounces`) are short blocking RocksDB
//! reads; `counts` and `due` are in memory. Writes are `async` and never block the runtime.
//!
//! Layout: this file holds the handle, opening, [`Queue::enqueue`], the commit plumbing every
//! write goes through and [`Queue::close`]; the methods are grouped by who calls them and how
//! they touch the store — [`read`] (blocking reads, no committer), [`record`] (per-recipient
//! transitions of the delivery and bounce path) and [`admin`] (operator actions on whole
//! messages); [`retention`] keeps the index of finished messages that [`purger`] deletes;
//! [`hot`] keeps the decoded metas the committer wrote last, for the reads that follow.

mod admin;
mod commit;
mod due;
mod hot;
mod keys;
pub mod model;
pub mod purger;
pub mod quota;
mod read;
mod record;
mod retention;
mod rows;
pub mod schedule;
mod store;
pub mod transition;

pub use due::{Due, DueScan};
pub use keys::RcptKey;
pub use model::{Hold, NewMessage, Outcome, QueuedMessage, RcptState, Recipient};
pub use quota::{StorageFull, Usage};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::clock::Clock;
use crate::config::QueueConfig;
use crate::db::{Cf, Column, Db, DbError, Family};

use crate::envelope::esmtp::{Esmtp, MessageParams, RcptParams};
use crate::envelope::{Destination, QueueId, Stream};
use crate::metrics::Metrics;
use commit::{Change, Committer, Durability, Shared};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(DbError),
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

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        match e {
            DbError::Closed => StoreError::Closed,
            DbError::Rocks(e) => StoreError::Rocks(e),
            e => StoreError::Db(e),
        }
    }
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
    pub fn reply(&self) -> crate::reply::Reply {
        crate::reply::STORE_UNAVAILABLE
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
    /// The database's directory: its filesystem's free space is what `min_free_disk` checks.
    dir: PathBuf,
    metrics: Metrics,
    /// Last free-space sample ([`quota::DISK_FREE_UNKNOWN`] until taken).
    disk_free: AtomicU64,
    /// The last admission check refused: log only when that changes.
    refusing: AtomicBool,
    progress: purger::Progress,
}

impl Drop for Inner {
    /// The last handle gone without `close`: stop the thread so the DB (and its lock file)
    /// is released now, not whenever the thread notices.
    fn drop(&mut self) {
        self.committer.stop();
    }
}

impl Queue {
    /// The queue in the `queue` family of the server's database; pending recipients are
    /// resumed from its index. The server closes the database after [`Queue::close`].
    pub fn in_db(
        db: &Db,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Queue, StoreError> {
        let col = Column::new(db, Family::Queue);
        Queue::open_column(col, cfg, clock, metrics, QueueOptions::default())
    }

    /// A queue alone in a database of its own in `dir` (tests, benches), closed with it.
    pub fn open(
        dir: &Path,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Queue, StoreError> {
        Queue::open_with(dir, cfg, clock, metrics, QueueOptions::default())
    }

    /// As [`Queue::open`], with store tunables.
    pub fn open_with(
        dir: &Path,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
        opts: QueueOptions,
    ) -> Result<Queue, StoreError> {
        let col = Column::standalone(dir, Family::Queue)?;
        Queue::open_column(col, cfg, clock, metrics, opts)
    }

    fn open_column(
        col: Column,
        cfg: QueueConfig,
        clock: Clock,
        metrics: Metrics,
        opts: QueueOptions,
    ) -> Result<Queue, StoreError> {
        let (counts, due, (live_messages, live_bytes)) = col.with(|q| {
            let counts = store::load_counts(q)?;
            let due = due::DueIndex::load(q)?;
            let live = quota::load_live(q)?;
            retention::mark_new_store(q)?;
            Ok::<_, StoreError>((counts, due, live))
        })?;
        let dir = col.db().path().to_path_buf();
        let shared = Arc::new(Shared {
            col,
            counts: Mutex::new(counts),
            due: Mutex::new(due),
            live: commit::Live {
                messages: (live_messages as i64).into(),
                bytes: (live_bytes as i64).into(),
            },
            finalized: Notify::new(),
            hot: hot::HotMetas::default(),
        });
        let committer = Committer::spawn(shared.clone(), metrics.clone())?;
        let inner = Inner {
            shared,
            committer,
            cfg,
            clock,
            opts,
            changed: Notify::new(),
            dir,
            metrics,
            disk_free: AtomicU64::new(quota::DISK_FREE_UNKNOWN),
            refusing: AtomicBool::new(false),
            progress: purger::Progress::default(),
        };
        let queue = Queue {
            inner: Arc::new(inner),
        };
        // Sampled before the first session can ask, so a full disk refuses from the start.
        queue.refresh_disk_free();
        Ok(queue)
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
        self.enqueue_as(QueueId::generate(), msg, stream, Esmtp::default())
            .await
    }

    /// As [`Queue::enqueue_stream`], under an id made earlier (by [`QueueId::generate`]): the
    /// inbound session names the message to the spam filter before storing it. `esmtp`: the
    /// client's MAIL/RCPT parameters, stored with the message and its recipients.
    pub async fn enqueue_as(
        &self,
        id: QueueId,
        msg: NewMessage,
        stream: Stream,
        esmtp: Esmtp,
    ) -> Result<QueueId, EnqueueError> {
        let n = msg.recipients.len();
        if n == 0 || n > usize::from(u16::MAX) {
            return Err(EnqueueError::Recipients(n));
        }
        let mut stored = new_meta(id, self.inner.clock.now_ms(), &msg);
        stored.stream = stream;
        stored.esmtp = esmtp.message;
        for (r, p) in stored.recipients.iter_mut().zip(esmtp.recipients) {
            r.esmtp = p;
        }
        // Built here, not on the committer thread, which serialises every write.
        let change = self
            .inner
            .shared
            .with_db(|q| store::enqueue(q, &stored, &msg.body))?;
        // The batch holds the body now: free this copy before the fsync wait.
        drop(msg);
        self.commit(move |_| Ok((change, ()))).await?;
        self.inner.changed.notify_one();
        Ok(id)
    }

    /// Runs `f` on the committer thread and waits (up to the deadline) until its change is durable.
    async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(Cf<'_>) -> Result<(Change, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.commit_as(Durability::Synced, f).await
    }

    /// As [`Queue::commit`], answered as `durability` says (see [`Durability`]).
    async fn commit_as<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(Cf<'_>) -> Result<(Change, T), StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (value_tx, value_rx) = oneshot::channel();
        let job = Box::new(move |db: Cf<'_>| {
            let (change, value) = f(db)?;
            let _ = value_tx.send(value);
            Ok(change)
        });
        let done = self.inner.committer.submit(job, durability);
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

    /// Commits what is queued and stops the committer. Every later call fails with
    /// `Closed` (reads return nothing). The database is flushed and closed by its owner
    /// ([`Db::close`], last at shutdown; a standalone queue's own, here). Idempotent.
    pub fn close(&self) {
        self.inner.committer.stop();
        self.inner.shared.col.close();
    }
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
                esmtp: RcptParams::default(),
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
        esmtp: MessageParams::default(),
    }
}
