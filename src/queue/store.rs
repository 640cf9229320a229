//! RocksDB access for the queue (its `queue` family of [`crate::db`]): reads, and building
//! the [`Change`] of each state transition. Every function here is blocking; [`Queue`](super::Queue) calls them on the
//! committer thread (writes) or from `spawn_blocking`/short synchronous reads.
//!
//! Index maintenance lives in one place, [`update`]: it diffs each recipient before and after
//! a transition and moves its `d/` and `s/` keys accordingly, in the same batch as the meta
//! (and the message's `r/` retention entry, through [`retention::follow`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::commit::Change;
use super::due::{Due, Edit, MASS};
use super::hot::HotMetas;
use super::keys;
use super::retention;
use super::rows::{corrupt, read_meta, scan};
use super::{QueuedMessage, RcptState, Recipient, StoreError};
use crate::db::Cf;
use crate::envelope::{Destination, QueueId, Stream};

pub fn read_body(db: Cf<'_>, id: QueueId) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(db.get(keys::body(id))?)
}

/// Recipients per state, from the `s/` index (once, at open; then kept by the committer).
pub fn load_counts(db: Cf<'_>) -> Result<HashMap<RcptState, u64>, StoreError> {
    let mut counts = HashMap::new();
    for item in scan(db, keys::STATE, keys::STATE) {
        let (k, _) = item?;
        let (st, _, _) = keys::parse_state(&k).ok_or_else(|| corrupt(&k, "bad state key"))?;
        *counts.entry(st).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Messages in arrival order; with `state`, those having at least one recipient in it.
pub fn list(
    db: Cf<'_>,
    state: Option<RcptState>,
    limit: usize,
) -> Result<Vec<QueuedMessage>, StoreError> {
    let mut out = Vec::new();
    let Some(st) = state else {
        for item in scan(db, keys::META, keys::META).take(limit) {
            let (k, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?);
        }
        return Ok(out);
    };
    let prefix = keys::state_prefix(st);
    let mut last = None;
    for item in scan(db, &prefix, &prefix) {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        let (_, id, _) = keys::parse_state(&k).ok_or_else(|| corrupt(&k, "bad state key"))?;
        if last == Some(id) {
            continue;
        }
        last = Some(id);
        if let Some(m) = read_meta(db, id)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// Ids of messages with a recipient `deferred`, `bounced` or `expired` (admin "retry failed").
pub fn retryable_ids(db: Cf<'_>) -> Result<Vec<QueueId>, StoreError> {
    let mut ids = std::collections::BTreeSet::new();
    for st in [RcptState::Deferred, RcptState::Bounced, RcptState::Expired] {
        let prefix = keys::state_prefix(st);
        for item in scan(db, &prefix, &prefix) {
            let (k, _) = item?;
            let (_, id, _) = keys::parse_state(&k).ok_or_else(|| corrupt(&k, "bad state key"))?;
            ids.insert(id);
        }
    }
    Ok(ids.into_iter().collect())
}

/// Messages holding a DSN (`bounce+TOKEN` recipient) the bounce stage has not processed.
pub fn pending_bounces(db: Cf<'_>) -> Result<Vec<QueueId>, StoreError> {
    scan(db, keys::BOUNCE, keys::BOUNCE)
        .map(|item| {
            let (k, _) = item?;
            keys::parse_id(&k).ok_or_else(|| corrupt(&k, "bad bounce key"))
        })
        .collect()
}

/// Index keys of a recipient in its current state.
fn put_indexes(q: Cf<'_>, change: &mut Change, id: QueueId, i: u16, r: &Recipient, stream: Stream) {
    q.put_in(&mut change.batch, keys::state(r.state, id, i), []);
    if r.state.is_pending() {
        let due = Due {
            due_ms: r.next_attempt_ms,
            id,
            rcpt: i,
            mass: stream == Stream::Mass,
        };
        put_due(q, change, due);
    }
}

/// The only writers of `d/` keys, [`put_due`] and [`delete_due`], also record the edit the
/// committer mirrors into the in-memory schedule ([`super::due`]): the two stay one.
fn put_due(q: Cf<'_>, change: &mut Change, due: Due) {
    let v: &[u8] = if due.mass { MASS } else { &[] };
    q.put_in(
        &mut change.batch,
        keys::due(due.due_ms, due.id, due.rcpt),
        v,
    );
    change.due.push(Edit::Add(due));
}

fn delete_indexes(q: Cf<'_>, change: &mut Change, id: QueueId, i: u16, r: &Recipient) {
    q.delete_in(&mut change.batch, keys::state(r.state, id, i));
    if r.state.is_pending() {
        delete_due(q, change, r.next_attempt_ms, id, i);
    }
}

fn delete_due(q: Cf<'_>, change: &mut Change, due_ms: u64, id: QueueId, rcpt: u16) {
    q.delete_in(&mut change.batch, keys::due(due_ms, id, rcpt));
    change.due.push(Edit::Remove { due_ms, id, rcpt });
}

fn rcpt_index(i: usize) -> u16 {
    // Enqueue refuses more than u16::MAX recipients, so stored indexes always fit.
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// The batch that stores a new message: meta, body, every recipient's indexes, and the
/// `B/` marker if it holds a DSN.
pub fn enqueue(q: Cf<'_>, msg: &QueuedMessage, body: &[u8]) -> Result<Change, StoreError> {
    let mut change = Change::default();
    enqueue_into(q, &mut change, msg, body)?;
    Ok(change)
}

/// As [`enqueue`], into a change that also carries other writes (one atomic batch).
pub fn enqueue_into(
    q: Cf<'_>,
    change: &mut Change,
    msg: &QueuedMessage,
    body: &[u8],
) -> Result<(), StoreError> {
    for (i, r) in msg.recipients.iter().enumerate() {
        put_indexes(q, change, msg.id, rcpt_index(i), r, msg.stream);
        change.moves.push((None, r.state));
    }
    let has_dsn = msg
        .recipients
        .iter()
        .any(|r| matches!(r.dest, Destination::Bounce { .. }));
    if has_dsn {
        q.put_in(&mut change.batch, keys::bounce(msg.id), []);
    }
    retention::enqueued(q, change, msg, has_dsn);
    q.put_in(
        &mut change.batch,
        keys::meta(msg.id),
        serde_json::to_vec(msg)?,
    );
    q.put_in(&mut change.batch, keys::body(msg.id), body);
    change.metas.push((msg.id, Some(Arc::new(msg.clone()))));
    Ok(())
}

/// The message's meta as the committer last wrote it: from `hot` when it was written
/// lately, else from RocksDB.
pub fn current(
    db: Cf<'_>,
    hot: &HotMetas,
    id: QueueId,
) -> Result<Option<QueuedMessage>, StoreError> {
    match hot.get(id) {
        Some(m) => Ok(Some(m)),
        None => read_meta(db, id),
    }
}

/// Read-modify-write of one message (run on the committer thread, which serialises writes):
/// `mutate` changes recipients in place; index keys follow each recipient's change.
pub fn update<T>(
    db: Cf<'_>,
    hot: &HotMetas,
    id: QueueId,
    mutate: impl FnOnce(&mut QueuedMessage) -> T,
) -> Result<(Change, T), StoreError> {
    let mut msg = current(db, hot, id)?.ok_or(StoreError::NotFound(id))?;
    let before = msg.recipients.clone();
    let result = mutate(&mut msg);
    let mut change = Change::default();
    for (i, (old, new)) in before.iter().zip(&msg.recipients).enumerate() {
        let moved = old.state != new.state;
        if !moved && (!new.state.is_pending() || old.next_attempt_ms == new.next_attempt_ms) {
            continue;
        }
        delete_indexes(db, &mut change, id, rcpt_index(i), old);
        put_indexes(db, &mut change, id, rcpt_index(i), new, msg.stream);
        if moved {
            change.moves.push((Some(old.state), new.state));
        }
    }
    retention::follow(db, &mut change, &before, &msg)?;
    db.put_in(&mut change.batch, keys::meta(id), serde_json::to_vec(&msg)?);
    change.metas.push((id, Some(Arc::new(msg))));
    Ok((change, result))
}

/// Removes a `d/` entry that no longer matches a pending recipient (a message deleted under
/// it, or a stale time); without this the scheduler would pick it up forever.
pub fn forget_due(db: Cf<'_>, hot: &HotMetas, due: Due) -> Result<Change, StoreError> {
    let mut change = Change::default();
    let current = current(db, hot, due.id)?
        .and_then(|m| m.recipients.get(usize::from(due.rcpt)).cloned())
        .filter(|r| r.state.is_pending() && r.next_attempt_ms == due.due_ms);
    if current.is_none() {
        delete_due(db, &mut change, due.due_ms, due.id, due.rcpt);
    }
    Ok(change)
}
