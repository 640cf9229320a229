//! Admission of new mail: [`Queue::admit`] says whether a session may open a transaction or
//! take a recipient, from `queue.max_messages`, `max_bytes` and `min_free_disk`. Over any of
//! them it refuses with [`StorageFull`] (`452 4.3.1`), and accepts again by itself once
//! deliveries (and retention) brought the usage down or the disk has room.
//!
//! Only SMTP intake is gated: what the server owes for mail it already took — retries, the
//! DSN a failure owes its sender, a forwarded copy — is still queued while over a limit, so
//! nothing accepted is dropped (those writes can push the usage past a limit; that is the
//! point of refusing new mail before the disk is actually full).
//!
//! Cheap on purpose (it runs at every MAIL and RCPT): the live usage is kept by the
//! committer ([`commit::Live`](super::commit::Live)), and free space is sampled by
//! [`Queue::watch_disk`] every [`DISK_CHECK_EVERY`], not asked of the kernel per command.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Queue, RcptState, StoreError, keys, rows};

use crate::db::Cf;

/// How often free space on the data filesystem is sampled.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Stored in place of a free-space sample that could not be taken: admits (a failing
/// `statvfs` must not stop the mail; it is logged).
pub const DISK_FREE_UNKNOWN: u64 = u64::MAX;

/// Why new mail is refused for now.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageFull {
    #[error("{count} messages in the queue, queue.max_messages is {max}")]
    Messages { count: u64, max: u64 },
    #[error("{bytes} bytes in the queue, queue.max_bytes is {max}")]
    Bytes { bytes: u64, max: u64 },
    #[error("{free} bytes free on the data filesystem, queue.min_free_disk is {min}")]
    Disk { free: u64, min: u64 },
}

impl StorageFull {
    /// Every limit gets the same reply: the client keeps the message and retries later.
    pub fn reply(&self) -> crate::reply::Reply {
        crate::reply::INSUFFICIENT_STORAGE
    }
}

/// What the limits are compared with (and the gauges show).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Messages not yet done: a recipient queued or deferred, or a DSN not yet read.
    pub messages: u64,
    /// Their bodies' bytes (`mxgate_queue_bytes`).
    pub bytes: u64,
    /// Free bytes on the data filesystem for an unprivileged writer (`mxgate_disk_free_bytes`);
    /// `None` until sampled, or when sampling fails.
    pub disk_free: Option<u64>,
}

impl Queue {
    /// May a session take new mail now? Logs when intake stops and when it resumes.
    pub fn admit(&self) -> Result<(), StorageFull> {
        let verdict = self.check_room();
        let was_full = self
            .inner
            .refusing
            .swap(verdict.is_err(), Ordering::Relaxed);
        match (&verdict, was_full) {
            (Err(e), false) => {
                tracing::warn!(reason = %e, "refusing new mail (452 4.3.1) until there is room")
            }
            (Ok(()), true) => tracing::info!("room again: accepting new mail"),
            _ => {}
        }
        verdict
    }

    fn check_room(&self) -> Result<(), StorageFull> {
        let cfg = &self.inner.cfg;
        let u = self.usage();
        if cfg.max_messages > 0 && u.messages >= cfg.max_messages {
            return Err(StorageFull::Messages {
                count: u.messages,
                max: cfg.max_messages,
            });
        }
        let max_bytes = cfg.max_bytes.0;
        if max_bytes > 0 && u.bytes >= max_bytes {
            return Err(StorageFull::Bytes {
                bytes: u.bytes,
                max: max_bytes,
            });
        }
        let min = cfg.min_free_disk.0;
        match u.disk_free {
            Some(free) if min > 0 && free < min => Err(StorageFull::Disk { free, min }),
            _ => Ok(()),
        }
    }

    /// Live usage and the last free-space sample.
    pub fn usage(&self) -> Usage {
        let live = &self.inner.shared.live;
        let get = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
        let free = self.inner.disk_free.load(Ordering::Relaxed);
        Usage {
            messages: get(&live.messages),
            bytes: get(&live.bytes),
            disk_free: (free != DISK_FREE_UNKNOWN).then_some(free),
        }
    }

    /// Blocking: samples free space on the store's filesystem now.
    pub fn refresh_disk_free(&self) -> Option<u64> {
        let free = match free_bytes(&self.inner.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "cannot read free disk space");
                DISK_FREE_UNKNOWN
            }
        };
        self.inner.disk_free.store(free, Ordering::Relaxed);
        (free != DISK_FREE_UNKNOWN).then_some(free)
    }

    /// Samples free space every [`DISK_CHECK_EVERY`] until `shutdown`.
    pub async fn watch_disk(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DISK_CHECK_EVERY) => {}
            }
            let me = self.clone();
            if tokio::task::spawn_blocking(move || me.refresh_disk_free())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// `statvfs`: blocks available to unprivileged users × fragment size, as `df` shows them.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Live usage at open: the messages with a pending recipient or an unread DSN (read from the
/// `s/` and `B/` indexes, which hold only those), and their sizes.
pub fn load_live(db: Cf<'_>) -> Result<(u64, u64), StoreError> {
    let mut ids = BTreeSet::new();
    for st in [RcptState::Queued, RcptState::Deferred] {
        let prefix = keys::state_prefix(st);
        for item in rows::scan(db, &prefix, &prefix) {
            let (k, _) = item?;
            ids.extend(keys::parse_state(&k).map(|(_, id, _)| id));
        }
    }
    for item in rows::scan(db, keys::BOUNCE, keys::BOUNCE) {
        let (k, _) = item?;
        ids.extend(keys::parse_id(&k));
    }
    let mut bytes = 0u64;
    for id in &ids {
        if let Some(m) = rows::read_meta(db, *id)? {
            bytes = bytes.saturating_add(m.size);
        }
    }
    Ok((ids.len() as u64, bytes))
}
