//! What the statistics remember about each relayed delivery, so that reports arriving
//! later can be tied back to it: the sending IP of a delivered recipient (`i/`, for the
//! `sending_ip` of a DSN counted days later) and the queue id of a delivered Message-ID
//! (`m/`, for a spam complaint that quotes only the Message-ID), plus their pruning.
//!
//! Split from `mod.rs` because these are point records with a lifetime (stamped at write,
//! swept after [`SENT_FROM_GRACE`]) looked up by key, while the hourly counters there are
//! aggregated by range scans and kept for good. Both live in the same store ([`store`]).

use std::time::Duration;

use rocksdb::WriteBatch;

use super::{Stats, StatsError, store};
use crate::db::{Family, Write};
use crate::envelope::QueueId;

/// How long a delivered recipient's sending IP (`i/`) and its message's Message-ID (`m/`)
/// are kept after the delivery: DSNs come minutes to a few days after it (remote queues
/// retry for up to 5 days before they give up) and feedback loops report complaints within
/// hours or days, so 7 days beyond `queue.expire_after` (the server's own longest retry
/// span, a generous bound for a remote's) covers what can still be expected. A DSN later
/// than that still counts, only without its `sending_ip`; a later complaint still becomes
/// an event, only without its queue id when it carries no VERP token.
pub const SENT_FROM_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// How often old sending IPs and Message-IDs are swept.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Deletes written per RocksDB batch while sweeping.
const PRUNE_BATCH: usize = 1000;
/// First byte of a time-stamped `i/` or `m/` value: `[1][ms since the epoch u64 BE][data]`.
/// `i/` values written before the stamp are the bare IP (ASCII, never starting with byte 1).
const STAMPED_V1: u8 = 1;
/// Longest Message-ID remembered (longer ones are not looked up either).
const MAX_MESSAGE_ID: usize = 512;

impl Stats {
    /// Remembers the IP recipient `rcpt` of `id` was delivered from: a DSN arriving later
    /// is counted under the same `sending_ip`. Stamped with now, for [`Stats::prune`].
    pub fn remember_sending_ip(&self, id: QueueId, rcpt: u16, ip: &str) {
        let value = stamped(self.clock.now_ms(), ip.as_bytes());
        self.put(&sent_from_key(id, rcpt), &value, "sending IP");
    }

    /// [`Stats::remember_sending_ip`] as a write for another store's batch, stamped `at_ms`.
    pub fn sending_ip_write(at_ms: u64, id: QueueId, rcpt: u16, ip: &str) -> Write {
        Write::Put(
            Family::Stats,
            sent_from_key(id, rcpt),
            stamped(at_ms, ip.as_bytes()),
        )
    }

    /// [`Stats::remember_message_id`] as a write for another store's batch, stamped
    /// `at_ms`; `None` for a Message-ID that is not remembered (empty or too long).
    pub fn message_id_write(at_ms: u64, message_id: &str, id: QueueId) -> Option<Write> {
        let key = message_id_key(message_id)?;
        Some(Write::Put(
            Family::Stats,
            key,
            stamped(at_ms, &id.to_bytes()),
        ))
    }

    /// The IP [`Stats::remember_sending_ip`] recorded, or `""`.
    pub fn sending_ip_of(&self, id: QueueId, rcpt: u16) -> String {
        self.get(&sent_from_key(id, rcpt))
            .map(|v| String::from_utf8_lossy(parse_stamped(&v).1).into_owned())
            .unwrap_or_default()
    }

    /// Remembers that the relayed message with `Message-ID` `message_id` (angle brackets
    /// optional) is `id`: a spam complaint that quotes only the Message-ID still names it.
    /// Stamped with now, for [`Stats::prune`].
    pub fn remember_message_id(&self, message_id: &str, id: QueueId) {
        if let Some(key) = message_id_key(message_id) {
            let value = stamped(self.clock.now_ms(), &id.to_bytes());
            self.put(&key, &value, "Message-ID");
        }
    }

    /// The message [`Stats::remember_message_id`] recorded for `message_id`.
    pub fn message_of(&self, message_id: &str) -> Option<QueueId> {
        let v = self.get(&message_id_key(message_id)?)?;
        QueueId::from_bytes(parse_stamped(&v).1)
    }

    fn put(&self, key: &[u8], value: &[u8], what: &str) {
        match self.store.put(key, value) {
            Ok(()) | Err(StatsError::Closed) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record the {what}"),
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.with(|db| Ok(db.get(key)?)).ok().flatten()
    }

    /// Blocking: deletes the sending IPs (`i/`) and Message-IDs (`m/`) recorded more than
    /// `keep` ago (no DSN or complaint about those deliveries is expected any more) and
    /// stamps records written before they carried a time with now, so they go one `keep`
    /// later. Returns how many were deleted. One pass over both prefixes.
    pub fn prune(&self, keep: Duration) -> Result<usize, StatsError> {
        let now = self.clock.now_ms();
        let cutoff = now.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        let mut deleted = 0;
        for prefix in [store::SENT_FROM, store::MESSAGE_IDS] {
            self.store.with(|db| {
                let mut batch = WriteBatch::default();
                for item in db.scan(prefix, store::prefix_end(prefix)) {
                    let (k, v) = item?;
                    match parse_stamped(&v) {
                        (Some(at), _) if at < cutoff => {
                            db.delete_in(&mut batch, &k);
                            deleted += 1;
                        }
                        (Some(_), _) => {}
                        (None, data) => db.put_in(&mut batch, &k, stamped(now, data)),
                    }
                    if batch.len() >= PRUNE_BATCH {
                        db.write(std::mem::take(&mut batch), false)?;
                    }
                }
                if !batch.is_empty() {
                    db.write(batch, false)?;
                }
                Ok(())
            })?;
        }
        Ok(deleted)
    }

    /// [`Stats::prune`] at start and every [`PRUNE_EVERY`] until `shutdown`; `keep` is
    /// `queue.expire_after` + [`SENT_FROM_GRACE`] (see the server).
    pub async fn run_pruner(self, keep: Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let stats = self.clone();
            match tokio::task::spawn_blocking(move || stats.prune(keep)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(deleted = n, "pruned old sending-IP and Message-ID records")
                }
                Ok(Err(StatsError::Closed)) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot prune sending-IP and Message-ID records")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning sending-IP and Message-ID records failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
            }
        }
    }
}

fn stamped(at_ms: u64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + data.len());
    v.push(STAMPED_V1);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// `i/` or `m/` value → (when it was written, if stamped; the data).
fn parse_stamped(v: &[u8]) -> (Option<u64>, &[u8]) {
    match v.split_first() {
        Some((&STAMPED_V1, rest)) if rest.len() >= 8 => {
            let (at, data) = rest.split_at(8);
            (at.try_into().ok().map(u64::from_be_bytes), data)
        }
        _ => (None, v),
    }
}

fn message_id_key(message_id: &str) -> Option<Vec<u8>> {
    let m = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if m.is_empty() || m.len() > MAX_MESSAGE_ID {
        return None;
    }
    let mut k = store::MESSAGE_IDS.to_vec();
    k.extend_from_slice(m.as_bytes());
    Some(k)
}

fn sent_from_key(id: QueueId, rcpt: u16) -> Vec<u8> {
    let mut k = store::SENT_FROM.to_vec();
    k.extend_from_slice(&id.to_bytes());
    k.extend_from_slice(&rcpt.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_sending_ips_and_message_ids_are_pruned_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = crate::clock::Clock::system();
        let s = Stats::open(dir.path(), clock.clone()).expect("open");
        let keep = Duration::from_secs(2 * 86_400) + SENT_FROM_GRACE;
        let (old, fresh, legacy) = (QueueId(1), QueueId(2), QueueId(3));
        s.remember_sending_ip(old, 0, "192.0.2.1");
        s.remember_message_id("<old@erp.test>", old);
        // A record from before values were time-stamped: the bare IP.
        s.store
            .put(&sent_from_key(legacy, 0), b"2001:db8::1")
            .expect("put");
        clock.advance(keep - Duration::from_secs(3600));
        s.remember_sending_ip(fresh, 1, "192.0.2.2");
        s.remember_message_id("fresh@erp.test", fresh);
        assert_eq!(s.prune(keep).expect("prune"), 0, "nothing is old yet");
        assert_eq!(s.sending_ip_of(old, 0), "192.0.2.1");
        assert_eq!(s.message_of("old@erp.test"), Some(old));
        assert_eq!(
            s.sending_ip_of(legacy, 0),
            "2001:db8::1",
            "read back as before"
        );

        clock.advance(Duration::from_secs(2 * 3600));
        assert_eq!(s.prune(keep).expect("prune"), 2);
        assert_eq!(s.sending_ip_of(old, 0), "", "older than keep: gone");
        assert_eq!(s.message_of("<old@erp.test>"), None);
        assert_eq!(s.sending_ip_of(fresh, 1), "192.0.2.2");
        assert_eq!(s.message_of("<fresh@erp.test>"), Some(fresh));
        assert_eq!(
            s.sending_ip_of(legacy, 0),
            "2001:db8::1",
            "stamped at the first sweep"
        );

        clock.advance(keep);
        assert_eq!(s.prune(keep).expect("prune"), 3);
        assert_eq!(s.store.count(store::SENT_FROM).expect("count"), 0);
        assert_eq!(s.store.count(store::MESSAGE_IDS).expect("count"), 0);
        assert_eq!(s.message_of(""), None);
        assert_eq!(s.message_of(&"x".repeat(MAX_MESSAGE_ID + 1)), None);
    }
}
