//! Operator actions from the admin API and the CLI: requeue ([`Queue::retry`],
//! [`Queue::retry_failed`]), cancel ([`Queue::cancel`]), hold and release
//! ([`Queue::hold`], [`Queue::release`]), redeliver to the ERP ([`Queue::redeliver`]).
//!
//! Split from `mod.rs` because these act on every recipient of a message at once, whatever
//! its state, on an operator's say-so — unlike the delivery path ([`super::record`]), which
//! moves one recipient per attempt. Each message's change is still one batch.

use super::{Queue, QueuedMessage, Recipient, StoreError, store, transition};
use crate::envelope::QueueId;

impl Queue {
    /// Requeues the message's `deferred`, `bounced` and `expired` recipients, due now.
    /// Returns how many were requeued; `NotFound` for an unknown id.
    pub async fn retry(&self, id: QueueId) -> Result<usize, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        let shared = self.inner.shared.clone();
        let n = self
            .commit(move |db| {
                store::update(db, &shared.hot, id, |m| {
                    apply_all(m, |r| transition::retry(r, now_ms))
                })
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

    /// Cancels the message's pending and held recipients. Returns how many; `NotFound` for
    /// an unknown id.
    pub async fn cancel(&self, id: QueueId) -> Result<usize, StoreError> {
        self.apply(id, transition::cancel).await
    }

    /// Holds the message's pending recipients ([`transition::admin_hold`]).
    pub async fn hold(&self, id: QueueId) -> Result<usize, StoreError> {
        self.apply(id, transition::admin_hold).await
    }

    /// Releases the message's held recipients, due now ([`transition::release`]).
    pub async fn release(&self, id: QueueId) -> Result<usize, StoreError> {
        self.apply(id, transition::release).await
    }

    /// Puts the message's recipients already delivered to an ERP route back in the queue,
    /// due now ([`transition::redeliver`]). A message past `queue.retention` is purged:
    /// `NotFound`.
    pub async fn redeliver(&self, id: QueueId) -> Result<usize, StoreError> {
        self.apply(id, transition::redeliver).await
    }

    /// Applies `f` to every recipient of `id` in one batch; wakes the scheduler when a
    /// recipient became due.
    async fn apply(
        &self,
        id: QueueId,
        f: fn(&mut Recipient, u64) -> bool,
    ) -> Result<usize, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        let shared = self.inner.shared.clone();
        let n = self
            .commit(move |db| {
                store::update(db, &shared.hot, id, |m| apply_all(m, |r| f(r, now_ms)))
            })
            .await?;
        if n > 0 {
            self.inner.changed.notify_one();
        }
        Ok(n)
    }
}

fn apply_all(m: &mut QueuedMessage, mut f: impl FnMut(&mut Recipient) -> bool) -> usize {
    m.recipients.iter_mut().map(|r| usize::from(f(r))).sum()
}
