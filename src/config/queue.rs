//! `[queue]`: retry policy, delivery concurrency, how long finished messages are kept
//! (`retention`) and when intake stops for lack of room (`max_messages`, `max_bytes`,
//! `min_free_disk`).

use serde::Deserialize;

use super::types::{ByteSize, HumanDuration};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// First retry delay; doubles each attempt, with ±20% jitter.
    pub retry_initial: HumanDuration,
    pub retry_max: HumanDuration,
    /// Give up (state `expired`) after this long in the queue.
    pub expire_after: HumanDuration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// A message whose recipients are all final is deleted (body, metadata, indexes) this
    /// long after its last transition; `0` = at once. Long enough for operators to look at
    /// what happened and for late DSNs to find the recipient they name.
    pub retention: HumanDuration,
    /// Messages not yet done (a recipient still to deliver, or a DSN not yet read) above
    /// which new mail gets `452 4.3.1`; `0` = unlimited.
    pub max_messages: u64,
    /// Bytes of those messages above which new mail gets `452 4.3.1`; `0` = unlimited.
    pub max_bytes: ByteSize,
    /// Free space on the data directory's filesystem below which new mail gets
    /// `452 4.3.1`; `0` = no check. Leaves room for what is already accepted (retries,
    /// DSNs, RocksDB compactions, which briefly need space to reclaim space).
    pub min_free_disk: ByteSize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_initial: HumanDuration::secs(60),
            retry_max: HumanDuration::secs(3600),
            expire_after: HumanDuration::secs(2 * 86400),
            concurrency: 32,
            retention: HumanDuration::secs(7 * 86400),
            max_messages: 0,
            max_bytes: ByteSize(0),
            min_free_disk: ByteSize(1024 * 1024 * 1024),
        }
    }
}
