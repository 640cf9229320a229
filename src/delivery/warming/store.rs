//! The persistent side of [`Warming`]: counters and last-IP records in the `warming` family,
//! cached in [`State`] and written through, and the `YYYY-MM-DD` dates of `warming.start`.
//!
//! Kept apart from the admit/settle policy so that the policy reads as counter arithmetic:
//! a closed or failing store never fails an attempt (a read gives `None`, a write is
//! logged), which is the one rule this module enforces.

use super::{DAY_MS, HOUR_MS, State, Warming};
use crate::db::{Cf, DbError, prefix_end};
use crate::envelope::Stream;

impl Warming {
    /// The IP `stream`'s mail last left from: cached, else from the store.
    pub(super) fn last_ip(&self, st: &mut State, stream: Stream) -> Option<String> {
        if let Some(ip) = st.last_ip.get(&stream) {
            return ip.clone();
        }
        let stored = self
            .inner
            .col
            .with(|db| Ok::<_, DbError>(db.get(last_ip_key(stream))?))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok());
        st.last_ip.insert(stream, stored.clone());
        stored
    }

    pub(super) fn set_last_ip(&self, st: &mut State, stream: Stream, ip: &str) {
        st.last_ip.insert(stream, Some(ip.to_string()));
        if let Err(e) = self.write(|db| db.put(last_ip_key(stream), ip.as_bytes())) {
            tracing::warn!(error = %e, "cannot store the last source IP");
        }
    }

    /// Counter `key` (little-endian u64): cached, else from the store.
    pub(super) fn get(&self, st: &mut State, key: &str) -> Option<u64> {
        if let Some(v) = st.counters.get(key) {
            return Some(*v);
        }
        let v = self
            .inner
            .col
            .with(|db| Ok::<_, DbError>(db.get(key.as_bytes())?))
            .ok()??;
        let v = u64::from_le_bytes(v.as_slice().try_into().ok()?);
        st.counters.insert(key.to_string(), v);
        Some(v)
    }

    /// Sets counter `key` in the cache and writes it through.
    pub(super) fn put(&self, st: &mut State, key: &str, v: u64) {
        st.counters.insert(key.to_string(), v);
        if let Err(e) = self.write(|db| db.put(key.as_bytes(), v.to_le_bytes())) {
            tracing::warn!(error = %e, key, "cannot store a warming counter");
        }
    }

    /// A write to the store; a closed store takes it silently (shutdown: admits all).
    fn write(&self, f: impl FnOnce(Cf<'_>) -> Result<(), rocksdb::Error>) -> Result<(), DbError> {
        match self.inner.col.with(|db| Ok::<_, DbError>(f(db)?)) {
            Err(DbError::Closed) => Ok(()),
            other => other,
        }
    }
}

impl Warming {
    /// Drops day counters (`d/…/<day>`, `c/…/<day>`) older than yesterday and hourly counters
    /// (`h/…/<hour>`) older than the previous hour, from the cache and the store: nothing
    /// reads them again (a restart seeds the provider rate from this hour and the previous
    /// one), and without this both would grow by a few entries per domain every hour.
    /// First days (`f/`) and last IPs (`l/`) stay. Run by `admit` once per clock hour.
    pub(super) fn prune(&self, st: &mut State, now_ms: u64) {
        let (today, hour) = (now_ms / DAY_MS, now_ms / HOUR_MS);
        let stale = |key: &[u8]| -> bool {
            let Some(when) = key
                .iter()
                .rposition(|b| *b == b'/')
                .and_then(|i| std::str::from_utf8(&key[i + 1..]).ok())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                return false;
            };
            match key.get(..2) {
                Some(b"d/" | b"c/") => when + 1 < today,
                Some(b"h/") => when + 1 < hour,
                _ => false,
            }
        };
        st.counters.retain(|k, _| !stale(k.as_bytes()));
        let pruned = self.inner.col.with(|db| {
            let mut batch = rocksdb::WriteBatch::default();
            for prefix in [&b"d/"[..], &b"c/"[..], &b"h/"[..]] {
                for item in db.scan(prefix, prefix_end(prefix)) {
                    let (key, _) = item?;
                    if stale(&key) {
                        db.delete_in(&mut batch, &key);
                    }
                }
            }
            let n = batch.len();
            if n > 0 {
                db.write(batch, false)?;
            }
            Ok::<_, DbError>(n)
        });
        match pruned {
            Ok(0) | Err(DbError::Closed) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned stale warming counters"),
            Err(e) => tracing::warn!(error = %e, "cannot prune warming counters"),
        }
    }
}

/// Store key of the IP a stream's mail last left from (`l/ip` predates streams).
fn last_ip_key(stream: Stream) -> &'static [u8] {
    match stream {
        Stream::Transactional => b"l/ip",
        Stream::Mass => b"l/ip/mass",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_day_and_hour_counters_are_pruned_and_current_ones_kept() {
        use crate::clock::Clock;
        use crate::config::Config;
        use crate::metrics::Metrics;
        use std::path::Path;

        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::from_toml("[warming]\nenabled = true\n", Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let clock = Clock::system();
        let open =
            || Warming::open(dir.path(), &config, clock.clone(), Metrics::new()).expect("open");
        let w = open();
        let now = clock.now_ms();
        let (today, hour) = (now / DAY_MS, now / HOUR_MS);
        let keys = [
            (format!("d/a.test/{}", today - 2), false),
            (format!("d/a.test/{}", today - 1), true),
            (format!("d/127.0.0.1/{today}"), true),
            (format!("h/a.test/gmail/{}", hour - 2), false),
            (format!("h/a.test/gmail/{}", hour - 1), true),
            (format!("h/a.test/gmail/{hour}"), true),
            (format!("h/a.test/gmail/2001:db8::2/{}", hour - 2), false),
            (format!("h/a.test/gmail/2001:db8::2/{}", hour - 1), true),
            ("f/a.test".to_string(), true),
        ];
        {
            let mut st = w.inner.state.lock().expect("lock");
            for (k, _) in &keys {
                w.put(&mut st, k, 7);
            }
            w.prune(&mut st, now);
        }
        // Read back through a fresh handle: the store itself, not the cache.
        w.close();
        drop(w);
        let w = open();
        let mut st = w.inner.state.lock().expect("lock");
        for (k, kept) in &keys {
            assert_eq!(w.get(&mut st, k).is_some(), *kept, "{k}");
        }
    }
}
