//! Reads of the queue: a message, its body, listings, the in-memory counts, the DSNs the
//! bounce stage still has to read, and the delivery scheduler's look at the schedule.
//!
//! Split from `mod.rs` because none of these go through the committer: they are short
//! blocking RocksDB reads (or, for [`Queue::counts`] and [`Queue::due`], memory) that any
//! caller may make, while every write is a `WriteBatch` submitted to the committer thread
//! ([`super::record`], [`super::admin`]).

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;

use super::{DueScan, Queue, QueuedMessage, RcptKey, RcptState, StoreError, store};
use crate::db::Cf;
use crate::envelope::QueueId;

impl Queue {
    fn read<T>(&self, what: &str, f: impl FnOnce(Cf<'_>) -> Result<T, StoreError>) -> Option<T> {
        match self.inner.shared.with_db(f) {
            Ok(v) => Some(v),
            Err(StoreError::Closed) => None,
            Err(e) => {
                tracing::warn!(error = %e, "queue read failed: {what}");
                None
            }
        }
    }

    /// A message's metadata and recipients (a clone of the decoded meta when it was
    /// written lately, [`super::hot`]).
    pub fn get(&self, id: QueueId) -> Option<QueuedMessage> {
        let hot = &self.inner.shared.hot;
        self.read("get", |db| store::current(db, hot, id)).flatten()
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

    /// Due recipients not in `in_flight`, earliest first, at most `max` (from memory).
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
        // The committer keeps the index; a closed queue answers as the store would.
        self.inner.shared.with_db(|_| Ok(()))?;
        Ok(self.due_index().scan(now_ms, in_flight, max, max_mass))
    }

    /// Whether a write added a schedule entry since the last [`Queue::due_streams`] (an
    /// enqueue, a deferral, a retry): only then can a scan find something the last one did
    /// not.
    pub fn due_added_since_scan(&self) -> bool {
        self.due_index().added_since_scan()
    }

    fn due_index(&self) -> std::sync::MutexGuard<'_, super::due::DueIndex> {
        self.inner
            .shared
            .due
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves when a recipient may have become due now (enqueue, retry). A wake-up sent
    /// while nobody waits is kept for the next call, so none is lost.
    pub async fn changed(&self) {
        self.inner.changed.notified().await
    }
}
