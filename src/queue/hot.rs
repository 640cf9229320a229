//! The metas of the messages written last, decoded, beside RocksDB: the reads that follow a
//! write at once — the delivery attempt of a message just accepted, the committer's
//! read-modify-write of its outcome — take a clone from here instead of a point read and a
//! JSON decode (those were 2.4% of the session worker's samples and 6% of the committer's
//! under the inbound load, issue 13).
//!
//! Coherent by construction: only the committer writes metas ([`super::store`]'s enqueue and
//! update put them, retention deletes them), each batch carries its meta writes
//! ([`Change::metas`](super::commit::Change)), and the committer mirrors them here right
//! after the batch is written and before it runs the next job or publishes the batch's due
//! entries. So a job never reads an older meta than RocksDB holds, and a delivery attempt
//! for a due entry finds the meta that entry came with. A miss reads RocksDB, which is never
//! older than this map. Bounded: the oldest entry goes when [`CAPACITY`] is reached.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::QueuedMessage;
use crate::envelope::QueueId;

/// Entries kept: more than the messages in flight between accept and first outcome under
/// load (a few hundred), a few hundred KiB of memory.
pub const CAPACITY: usize = 1024;

/// A meta write of one batch: the message as stored, or `None` when it is deleted.
pub type MetaWrite = (QueueId, Option<Arc<QueuedMessage>>);

#[derive(Default)]
pub struct HotMetas {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<QueueId, Arc<QueuedMessage>>,
    /// Insertion order, for eviction. An id deleted from `map` keeps its slot until it
    /// reaches the front, so `map.len() <= order.len() <= CAPACITY`.
    order: VecDeque<QueueId>,
}

impl HotMetas {
    /// The message as last written, when it was written lately.
    pub fn get(&self, id: QueueId) -> Option<QueuedMessage> {
        self.lock().map.get(&id).map(|m| QueuedMessage::clone(m))
    }

    /// Mirrors one written batch's meta writes, in order.
    pub fn apply(&self, writes: Vec<MetaWrite>) {
        if writes.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (id, meta) in writes {
            match meta {
                Some(meta) => {
                    if inner.map.insert(id, meta).is_none() {
                        inner.order.push_back(id);
                    }
                }
                None => {
                    inner.map.remove(&id);
                }
            }
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each apply leaves the map consistent after every step: usable after a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ListenerKind;

    fn meta(id: QueueId, helo: &str) -> Arc<QueuedMessage> {
        Arc::new(QueuedMessage {
            id,
            received_ms: 1,
            listener: ListenerKind::Inbound,
            peer_ip: "192.0.2.1".parse().expect("ip"),
            helo: helo.into(),
            mail_from: "a@client.test".into(),
            size: 10,
            recipients: Vec::new(),
            stream: Default::default(),
            esmtp: Default::default(),
        })
    }

    #[test]
    fn the_last_write_wins_and_a_delete_forgets() {
        let hot = HotMetas::default();
        let (a, b) = (QueueId::generate(), QueueId::generate());
        hot.apply(vec![(a, Some(meta(a, "one"))), (b, Some(meta(b, "b")))]);
        hot.apply(vec![(a, Some(meta(a, "two")))]);
        assert_eq!(hot.get(a).map(|m| m.helo), Some("two".to_string()));
        hot.apply(vec![(a, None)]);
        assert!(hot.get(a).is_none());
        assert_eq!(hot.get(b).map(|m| m.helo), Some("b".to_string()));
        // Written again after its delete (an id is never reused, but the map must not care).
        hot.apply(vec![(a, Some(meta(a, "three")))]);
        assert_eq!(hot.get(a).map(|m| m.helo), Some("three".to_string()));
    }

    #[test]
    fn the_oldest_entries_go_first_and_deletes_do_not_leak_slots() {
        let hot = HotMetas::default();
        let ids: Vec<QueueId> = (0..CAPACITY + 10).map(|_| QueueId::generate()).collect();
        for id in &ids {
            hot.apply(vec![(*id, Some(meta(*id, "x")))]);
        }
        assert_eq!(hot.len(), CAPACITY);
        assert!(hot.get(ids[9]).is_none(), "the oldest went");
        assert!(hot.get(ids[10]).is_some());
        assert!(hot.get(ids[CAPACITY + 9]).is_some());
        // A stream of messages written then deleted keeps the order queue bounded too.
        for _ in 0..3 * CAPACITY {
            let id = QueueId::generate();
            hot.apply(vec![(id, Some(meta(id, "y"))), (id, None)]);
        }
        assert!(hot.lock().order.len() <= CAPACITY);
    }
}
