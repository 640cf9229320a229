//! The persistent side of [`Warming`]: counters and last-IP records in its own RocksDB,
//! cached in [`State`] and written through, and the `YYYY-MM-DD` dates of `warming.start`.
//!
//! Kept apart from the admit/settle policy so that the policy reads as counter arithmetic:
//! a closed or failing store never fails an attempt (a read gives `None`, a write is
//! logged), which is the one rule this module enforces.

use super::{State, Warming};
use crate::queue::Stream;

impl Warming {
    /// The IP `stream`'s mail last left from: cached, else from the store.
    pub(super) fn last_ip(&self, st: &mut State, stream: Stream) -> Option<String> {
        if let Some(ip) = st.last_ip.get(&stream) {
            return ip.clone();
        }
        let stored = self.inner.db.lock().ok().and_then(|db| {
            let v = db.as_ref()?.get(last_ip_key(stream)).ok()??;
            String::from_utf8(v).ok()
        });
        st.last_ip.insert(stream, stored.clone());
        stored
    }

    pub(super) fn set_last_ip(&self, st: &mut State, stream: Stream, ip: &str) {
        st.last_ip.insert(stream, Some(ip.to_string()));
        if let Ok(db) = self.inner.db.lock()
            && let Some(db) = db.as_ref()
            && let Err(e) = db.put(last_ip_key(stream), ip.as_bytes())
        {
            tracing::warn!(error = %e, "cannot store the last source IP");
        }
    }

    /// Counter `key` (little-endian u64): cached, else from the store.
    pub(super) fn get(&self, st: &mut State, key: &str) -> Option<u64> {
        if let Some(v) = st.counters.get(key) {
            return Some(*v);
        }
        let db = self.inner.db.lock().ok()?;
        let v = db.as_ref()?.get(key.as_bytes()).ok()??;
        let v = u64::from_le_bytes(v.as_slice().try_into().ok()?);
        st.counters.insert(key.to_string(), v);
        Some(v)
    }

    /// Sets counter `key` in the cache and writes it through.
    pub(super) fn put(&self, st: &mut State, key: &str, v: u64) {
        st.counters.insert(key.to_string(), v);
        if let Ok(db) = self.inner.db.lock()
            && let Some(db) = db.as_ref()
            && let Err(e) = db.put(key.as_bytes(), v.to_le_bytes())
        {
            tracing::warn!(error = %e, key, "cannot store a warming counter");
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

/// `"2026-11-01"` → days since 1970-01-01 (UTC).
pub fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let mdays = [
        31,
        28 + u32::from(is_leap(y)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > mdays[m as usize - 1]
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_day_numbers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2026-11-23"), Some(20_780));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("yesterday"), None);
    }
}
