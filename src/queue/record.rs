//! The delivery-facing writes: one attempt's outcome ([`Queue::record`],
//! [`Queue::record_then`]), a warming or rate hold ([`Queue::hold_then`]), a DSN that came
//! back for a relayed recipient ([`Queue::bounce_reported`]), the bounce stage's
//! acknowledgement of a stored DSN ([`Queue::bounce_processed`]) and dropping a stale schedule
//! entry ([`Queue::forget_due`]).
//!
//! Split from `mod.rs` because these are the per-recipient state transitions of the data
//! path ([`transition`](super::transition)), each committed as one batch — together with the
//! follow-up message (the DSN owed to the sender) where one is due, so a crash cannot keep
//! the failure and lose the DSN. Operator actions live in [`super::admin`].

use super::{
    Due, NewMessage, Queue, QueuedMessage, RcptState, Recipient, StoreError, new_meta, retention,
    schedule, store, transition,
};
use super::{Durability, Hold, Outcome};
use crate::bounce::Category;
use crate::db::Write;

use crate::envelope::QueueId;

impl Queue {
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
        let done = self.record_then(id, rcpt, outcome, |_, _| None).await?;
        Ok(done.map(|(state, _)| state))
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
        let step = move |r: &mut Recipient, at: &transition::Attempt<'_>| {
            transition::record(r, &outcome, at)
        };
        let jitter = schedule::random_jitter();
        self.transition_then(id, rcpt, jitter, step, follow, |_, _| Vec::new())
            .await
    }

    /// As [`Queue::record_then`], and in the same batch — under the same WAL fsync — the
    /// writes `also` makes to other stores of the database from the message as recorded
    /// and the recipient's new state (e.g. its statistics counter,
    /// [`Stats::delivered_write`](crate::stats::Stats::delivered_write)): a crash keeps both
    /// or neither.
    pub async fn record_then_writing(
        &self,
        id: QueueId,
        rcpt: u16,
        outcome: &Outcome,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
        also: impl FnOnce(&QueuedMessage, RcptState) -> Vec<Write> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let outcome = outcome.clone();
        let step = move |r: &mut Recipient, at: &transition::Attempt<'_>| {
            transition::record(r, &outcome, at)
        };
        let jitter = schedule::random_jitter();
        self.transition_then(id, rcpt, jitter, step, follow, also)
            .await
    }

    /// A warming cap or provider rate holds recipient `rcpt` of `id` until its window opens
    /// ([`transition::hold`]): `deferred` with the hold's reason, no attempt counted, or
    /// `expired` past `queue.expire_after`; with the follow-up message that state calls
    /// for and the other stores' writes `also` makes (an expiry's statistics), written
    /// atomically as in [`Queue::record_then_writing`]. `None` when the recipient was no
    /// longer pending.
    pub async fn hold_then(
        &self,
        id: QueueId,
        rcpt: u16,
        hold: &Hold,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
        also: impl FnOnce(&QueuedMessage, RcptState) -> Vec<Write> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let hold = hold.clone();
        let step =
            move |r: &mut Recipient, at: &transition::Attempt<'_>| transition::hold(r, &hold, at);
        self.transition_then(id, rcpt, 0.0, step, follow, also)
            .await
    }

    /// One transition (`step`, false = the recipient was no longer pending) of recipient
    /// `rcpt` of message `id`, plus the follow-up message its new state calls for and the
    /// other stores' writes `also` makes, in one batch.
    async fn transition_then(
        &self,
        id: QueueId,
        rcpt: u16,
        jitter: f64,
        step: impl FnOnce(&mut Recipient, &transition::Attempt<'_>) -> bool + Send + 'static,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
        also: impl FnOnce(&QueuedMessage, RcptState) -> Vec<Write> + Send + 'static,
    ) -> Result<Option<(RcptState, Option<QueueId>)>, StoreError> {
        let cfg = self.inner.cfg.clone();
        let now_ms = self.inner.clock.now_ms();
        let shared = self.inner.shared.clone();
        // Lazy: an outcome lost with the machine only repeats the attempt (see Durability).
        let done = self
            .commit_as(Durability::Lazy, move |db| {
                let (mut change, state) = store::update(db, &shared.hot, id, |m| {
                    let at = transition::Attempt {
                        cfg: &cfg,
                        received_ms: m.received_ms,
                        now_ms,
                        jitter,
                    };
                    let r = m.recipients.get_mut(usize::from(rcpt))?;
                    if !step(r, &at) {
                        return None;
                    }
                    let state = r.state;
                    Some((state, follow(m, state), also(m, state)))
                })?;
                let Some((state, new, writes)) = state else {
                    return Ok((change, None));
                };
                for w in &writes {
                    db.add(&mut change.batch, w);
                }
                let mut queued = None;
                if let Some(new) = new.filter(|n| !n.recipients.is_empty()) {
                    let new_id = QueueId::generate();
                    let meta = new_meta(new_id, now_ms, &new);
                    store::enqueue_into(db, &mut change, &meta, &new.body)?;
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

    /// A DSN arrived for recipient `rcpt` of `id` (VERP token): the recipient becomes
    /// `bounced` with the category and the remote words, even if it was `sent` (the remote
    /// MTA accepted it, then failed later). Returns the new state, or `None` when the
    /// recipient is already final in another way (cancelled, expired, bounced). The
    /// other stores' writes `also` makes (the bounce's statistics) go in the same batch, as
    /// in [`Queue::record_then_writing`].
    ///
    /// `follow` makes the message the bounce owes (the bounce fed back to the ERP that sent
    /// the original), enqueued in that same batch: a crash cannot record the bounce and
    /// lose the feedback, and a DSN read twice finds the recipient final and owes nothing.
    pub async fn bounce_reported(
        &self,
        id: QueueId,
        rcpt: u16,
        category: Option<Category>,
        reply: String,
        also: impl FnOnce(&QueuedMessage) -> Vec<Write> + Send + 'static,
        follow: impl FnOnce(&QueuedMessage) -> Option<NewMessage> + Send + 'static,
    ) -> Result<Option<RcptState>, StoreError> {
        let now_ms = self.inner.clock.now_ms();
        let shared = self.inner.shared.clone();
        let done = self
            .commit(move |db| {
                let (mut change, state) = store::update(db, &shared.hot, id, |m| {
                    let r = m.recipients.get_mut(usize::from(rcpt))?;
                    let state = transition::bounce_reported(r, category, reply, now_ms)
                        .then_some(r.state)?;
                    Some((state, also(m), follow(m)))
                })?;
                let Some((state, writes, new)) = state else {
                    return Ok((change, None));
                };
                for w in &writes {
                    db.add(&mut change.batch, w);
                }
                let mut queued = false;
                if let Some(new) = new.filter(|n| !n.recipients.is_empty()) {
                    let meta = new_meta(QueueId::generate(), now_ms, &new);
                    store::enqueue_into(db, &mut change, &meta, &new.body)?;
                    queued = true;
                }
                Ok((change, Some((state, queued))))
            })
            .await?;
        if done.is_some_and(|(_, queued)| queued) {
            self.inner.changed.notify_one();
        }
        Ok(done.map(|(state, _)| state))
    }

    /// The bounce stage has processed this DSN: drop it from [`Queue::pending_bounces`].
    pub async fn bounce_processed(&self, id: QueueId) -> Result<(), StoreError> {
        self.commit(move |db| Ok((retention::dsn_read(db, id)?, ())))
            .await
    }

    /// Drops a `d/` entry that matches no pending recipient (see [`store::forget_due`]).
    pub async fn forget_due(&self, due: Due) -> Result<(), StoreError> {
        let shared = self.inner.shared.clone();
        self.commit_as(Durability::Lazy, move |db| {
            Ok((store::forget_due(db, &shared.hot, due)?, ()))
        })
        .await
    }
}
