//! The retention index (`r/`, see [`keys`]) and the batches that use it: keeping it exact in
//! every state change ([`follow`], [`enqueued`], [`dsn_read`]), finding what is due
//! ([`due`]), deleting it ([`purge`]) and indexing a store written before retention existed
//! ([`backfill`]). All blocking; writes run on the committer thread, like every write.
//!
//! Why an index instead of scanning the messages: the purge then reads only what is due, in
//! the order it became due, and its `r/` value names every `s/` key to delete, so deleting a
//! message reads nothing else — a batch of purges costs the committer a few point lookups.

use super::commit::{Change, LiveDelta};
use super::{QueuedMessage, Recipient, StoreError};
use super::{keys, rows};

use crate::db::Cf;
use crate::envelope::QueueId;

/// When the message's last transition happened, if every recipient is final.
pub fn final_ms(recipients: &[Recipient]) -> Option<u64> {
    if recipients.is_empty() || recipients.iter().any(|r| !r.state.is_final()) {
        return None;
    }
    recipients.iter().map(|r| r.updated_ms).max()
}

fn dsn_unread(db: Cf<'_>, id: QueueId) -> Result<bool, StoreError> {
    Ok(db.get_pinned(keys::bounce(id))?.is_some())
}

fn states(msg: &QueuedMessage) -> Vec<u8> {
    msg.recipients
        .iter()
        .map(|r| keys::state_byte(r.state))
        .collect()
}

fn index(q: Cf<'_>, change: &mut Change, msg: &QueuedMessage, at: u64) {
    q.put_in(&mut change.batch, keys::retain(at, msg.id), states(msg));
    change.finalized = true;
}

/// A new message: live, unless already finished (then indexed at once).
pub fn enqueued(q: Cf<'_>, change: &mut Change, msg: &QueuedMessage, has_dsn: bool) {
    match final_ms(&msg.recipients).filter(|_| !has_dsn) {
        Some(at) => index(q, change, msg, at),
        None => change.live += LiveDelta::message(msg.size, 1),
    }
}

/// Moves the message's `r/` entry (and its live usage) from its state `before` to `msg`'s
/// state. Reads nothing while a recipient is still pending, i.e. on most transitions.
pub fn follow(
    db: Cf<'_>,
    change: &mut Change,
    before: &[Recipient],
    msg: &QueuedMessage,
) -> Result<(), StoreError> {
    let (was, now) = (final_ms(before), final_ms(&msg.recipients));
    if was.is_none() && now.is_none() {
        return Ok(());
    }
    // The `B/` marker never changes inside an update: both states see the same answer.
    let unread = dsn_unread(db, msg.id)?;
    let (was, now) = (was.filter(|_| !unread), now.filter(|_| !unread));
    if let Some(at) = was {
        db.delete_in(&mut change.batch, keys::retain(at, msg.id));
    }
    if let Some(at) = now {
        index(db, change, msg, at);
    }
    match (was, now) {
        (None, Some(_)) => change.live += LiveDelta::message(msg.size, -1),
        (Some(_), None) => change.live += LiveDelta::message(msg.size, 1),
        _ => {}
    }
    Ok(())
}

/// The bounce stage has read the DSN in `id`: the `B/` marker goes, and a message with no
/// recipient pending is done (indexed). Reading it twice changes nothing the second time.
pub fn dsn_read(db: Cf<'_>, id: QueueId) -> Result<Change, StoreError> {
    let mut change = Change::default();
    if !dsn_unread(db, id)? {
        return Ok(change);
    }
    db.delete_in(&mut change.batch, keys::bounce(id));
    if let Some(msg) = rows::read_meta(db, id)?
        && let Some(at) = final_ms(&msg.recipients)
    {
        index(db, &mut change, &msg, at);
        change.live += LiveDelta::message(msg.size, -1);
    }
    Ok(change)
}

/// One entry of the retention index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub final_ms: u64,
    pub id: QueueId,
}

/// What one look at the index found.
#[derive(Debug, Default)]
pub struct DueEntries {
    /// Finished at or before the cutoff, oldest first, at most the `max` asked for.
    pub due: Vec<Entry>,
    /// When the first entry not returned finished (None: no more entries).
    pub next_ms: Option<u64>,
}

/// Entries finished at or before `cutoff_ms`, from `from_ms` on (a seek past the front,
/// where the purge leaves tombstones until the next compaction).
pub fn due(db: Cf<'_>, from_ms: u64, cutoff_ms: u64, max: usize) -> Result<DueEntries, StoreError> {
    let start = keys::retain_from(from_ms);
    let mut out = DueEntries::default();
    for item in rows::scan(db, keys::RETAIN, &start) {
        let (k, _) = item?;
        let (final_ms, id) = keys::parse_retain(&k).ok_or_else(|| bad_key(&k))?;
        if final_ms > cutoff_ms || out.due.len() >= max {
            out.next_ms = Some(final_ms);
            break;
        }
        out.due.push(Entry { final_ms, id });
    }
    Ok(out)
}

fn bad_key(k: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: "bad retention key".into(),
    }
}

/// Deletes the messages of `entries` whose entry is still there (one that moved or went
/// since the scan — retried, bounced late — is left alone): meta, body, every `s/` key the
/// entry lists, the entry. Returns the change and how many messages it deletes.
pub fn purge(db: Cf<'_>, entries: &[Entry]) -> Result<(Change, usize), StoreError> {
    let mut change = Change::default();
    let mut n = 0;
    for e in entries {
        let key = keys::retain(e.final_ms, e.id);
        let Some(states) = db.get_pinned(key)? else {
            continue;
        };
        for (i, b) in states.iter().enumerate() {
            let st = keys::state_from_byte(*b).ok_or_else(|| bad_key(&key))?;
            let i = u16::try_from(i).map_err(|_| bad_key(&key))?;
            db.delete_in(&mut change.batch, keys::state(st, e.id, i));
            change.removed.push(st);
        }
        db.delete_in(&mut change.batch, key);
        db.delete_in(&mut change.batch, keys::meta(e.id));
        db.delete_in(&mut change.batch, keys::body(e.id));
        change.metas.push((e.id, None));
        n += 1;
    }
    Ok((change, n))
}

/// Messages looked at per [`backfill`] batch.
pub const BACKFILL_BATCH: usize = 512;

/// Indexes the finished messages of a store written before retention existed, `max` metas
/// at a time from `from` on. Returns the change and where to go on (None: done, and the
/// change records that the index is complete).
pub fn backfill(
    db: Cf<'_>,
    from: QueueId,
    max: usize,
) -> Result<(Change, Option<QueueId>), StoreError> {
    let mut change = Change::default();
    let start = keys::meta(from);
    for (seen, item) in rows::scan(db, keys::META, &start).enumerate() {
        let (k, v) = item?;
        let id = keys::parse_id(&k).ok_or_else(|| bad_key(&k))?;
        if seen == max {
            return Ok((change, Some(id)));
        }
        let msg: QueuedMessage = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
            key: id.to_string(),
            reason: e.to_string(),
        })?;
        if let Some(at) = final_ms(&msg.recipients)
            && !dsn_unread(db, id)?
        {
            // Put again if present: same key, same value.
            index(db, &mut change, &msg, at);
        }
    }
    db.put_in(&mut change.batch, keys::RETAIN_INDEXED, []);
    Ok((change, None))
}

/// The index is complete (a store made with retention, or backfilled).
pub fn indexed(db: Cf<'_>) -> Result<bool, StoreError> {
    Ok(db.get_pinned(keys::RETAIN_INDEXED)?.is_some())
}

/// A new, empty store needs no backfill: mark it indexed.
pub fn mark_new_store(db: Cf<'_>) -> Result<(), StoreError> {
    let empty = rows::scan(db, keys::META, keys::META).next().is_none();
    if empty && !indexed(db)? {
        db.put(keys::RETAIN_INDEXED, [])?;
    }
    Ok(())
}
