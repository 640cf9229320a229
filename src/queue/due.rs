//! The delivery schedule in memory: a copy of the store's `d/` index, read once when the
//! queue opens and then kept by the committer, which applies each change's edits right after
//! writing its batch. The scheduler's look at what is due is a range over this map, not a
//! RocksDB iterator: every delivered recipient leaves a tombstone at the front of the `d/`
//! keys, and seeking past them (LZ4 blocks read back after each flush) was 7% of the CPU of
//! an inbound run, once per enqueue (issue 13).
//!
//! The store stays the truth: the map holds exactly its `d/` keys (mass flag = the value),
//! so a restart rebuilds it and a stale entry is handled as before ([`super::store::forget_due`]).
//! Cost: one map entry (about 50 bytes) per pending recipient.

use std::collections::{BTreeMap, HashSet};

use super::StoreError;
use super::keys::{self, RcptKey};
use super::rows::{corrupt, scan};
use crate::db::Cf;
use crate::envelope::QueueId;

/// A recipient whose attempt is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub due_ms: u64,
    pub id: QueueId,
    pub rcpt: u16,
    /// The message is `mass` mail (the `d/` entry's value says so).
    pub mass: bool,
}

/// What the scheduler gets from one look at the schedule ([`DueIndex::scan`]).
#[derive(Debug, Default)]
pub struct DueScan {
    /// Due now, not in flight, at most the `max` asked for, earliest first.
    pub ready: Vec<Due>,
    /// Due time of the first entry not returned (None: index exhausted).
    pub next_due_ms: Option<u64>,
    /// Entries due now were left out: `max` was reached, or mass mail was over its share.
    pub more: bool,
}

/// Value of a `d/` entry of a mass message (transactional: empty).
pub const MASS: &[u8] = b"m";

/// One `d/` key written or deleted by a change, for the committer to mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    Add(Due),
    Remove { due_ms: u64, id: QueueId, rcpt: u16 },
}

/// The `d/` entries in key order: (due time, message, recipient) → mass.
#[derive(Debug, Default)]
pub struct DueIndex {
    entries: BTreeMap<(u64, QueueId, u16), bool>,
    /// An entry was added since the last [`DueIndex::scan`].
    added: bool,
}

impl DueIndex {
    /// Every `d/` entry of the store (at open, before the committer runs).
    pub fn load(db: Cf<'_>) -> Result<DueIndex, StoreError> {
        let mut index = DueIndex::default();
        for item in scan(db, keys::DUE, keys::DUE) {
            let (k, v) = item?;
            let (due_ms, id, rcpt) =
                keys::parse_due(&k).ok_or_else(|| corrupt(&k, "bad due key"))?;
            index.entries.insert((due_ms, id, rcpt), v.as_ref() == MASS);
        }
        Ok(index)
    }

    /// Mirrors a written batch's `d/` writes.
    pub fn apply(&mut self, edits: &[Edit]) {
        for edit in edits {
            match *edit {
                Edit::Add(d) => {
                    self.entries.insert((d.due_ms, d.id, d.rcpt), d.mass);
                    self.added = true;
                }
                Edit::Remove { due_ms, id, rcpt } => {
                    self.entries.remove(&(due_ms, id, rcpt));
                }
            }
        }
    }

    /// Whether an entry was added since the last scan: only then can a scan find something
    /// the last one did not.
    pub fn added_since_scan(&self) -> bool {
        self.added
    }

    /// Entries due at `now_ms` and not in flight, earliest first, at most `max`, of which
    /// at most `max_mass` are mass mail (the others are passed over, so transactional mail
    /// due later is still found).
    pub fn scan(
        &mut self,
        now_ms: u64,
        in_flight: &HashSet<RcptKey>,
        max: usize,
        max_mass: usize,
    ) -> DueScan {
        self.added = false;
        let mut out = DueScan::default();
        let mut mass_taken = 0;
        for (&(due_ms, id, rcpt), &mass) in &self.entries {
            if due_ms > now_ms || out.ready.len() >= max {
                out.next_due_ms = Some(due_ms);
                out.more |= due_ms <= now_ms;
                break;
            }
            if mass && mass_taken >= max_mass {
                // Mass mail over its share: passed over; an attempt finishing wakes the loop.
                out.more = true;
                continue;
            }
            if !in_flight.contains(&(id, rcpt)) {
                mass_taken += usize::from(mass);
                out.ready.push(Due {
                    due_ms,
                    id,
                    rcpt,
                    mass,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(due_ms: u64, id: u64, rcpt: u16, mass: bool) -> Due {
        Due {
            due_ms,
            id: QueueId(id),
            rcpt,
            mass,
        }
    }

    fn remove(d: Due) -> Edit {
        Edit::Remove {
            due_ms: d.due_ms,
            id: d.id,
            rcpt: d.rcpt,
        }
    }

    #[test]
    fn scan_returns_due_entries_in_time_order_and_the_next_due_time() {
        let mut ix = DueIndex::default();
        let (a, b, c) = (
            due(30, 1, 0, false),
            due(10, 2, 1, false),
            due(99, 3, 0, false),
        );
        ix.apply(&[Edit::Add(a), Edit::Add(b), Edit::Add(c)]);
        assert!(ix.added_since_scan());
        let s = ix.scan(50, &HashSet::new(), 10, 10);
        assert_eq!(s.ready, vec![b, a]);
        assert_eq!(s.next_due_ms, Some(99));
        assert!(!s.more);
        assert!(!ix.added_since_scan());
        ix.apply(&[remove(b)]);
        assert!(!ix.added_since_scan(), "a removal adds nothing to find");
        assert_eq!(ix.scan(50, &HashSet::new(), 10, 10).ready, vec![a]);
        assert_eq!(ix.scan(100, &HashSet::new(), 10, 10).ready, vec![a, c]);
    }

    #[test]
    fn scan_skips_in_flight_caps_at_max_and_passes_over_mass_beyond_its_share() {
        let mut ix = DueIndex::default();
        let m1 = due(1, 1, 0, true);
        let m2 = due(2, 2, 0, true);
        let t1 = due(3, 3, 0, false);
        let t2 = due(4, 3, 1, false);
        ix.apply(&[Edit::Add(m1), Edit::Add(m2), Edit::Add(t1), Edit::Add(t2)]);
        let s = ix.scan(10, &HashSet::new(), 10, 1);
        assert_eq!(s.ready, vec![m1, t1, t2]);
        assert!(s.more, "m2 was passed over");
        let flying: HashSet<RcptKey> = [(QueueId(1), 0)].into();
        let s = ix.scan(10, &flying, 2, 10);
        assert_eq!(s.ready, vec![m2, t1]);
        assert_eq!(s.next_due_ms, Some(4));
        assert!(s.more, "t2 is due but over max");
    }
}
