//! Time for everything that schedules: backoff, expiry, (later) warming days. Tests step a
//! manual clock instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the epoch, optionally shifted by a test offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (real + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Moves this clock (and every clone of it) forward; for tests.
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_all_clones() {
        let c = Clock::system();
        let d = c.clone();
        let before = d.now_ms();
        c.advance(std::time::Duration::from_secs(86_400));
        assert!(d.now_ms() >= before + 86_400_000);
    }
}
