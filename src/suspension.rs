//! Auto-suspension of sending domains (issue 6 item 7): when the permanent bounce rate of a
//! sending domain over its last `suspension.window` sends passes
//! `suspension.threshold_percent`, the domain is suspended — submission refuses its mail at
//! MAIL FROM with `550 5.7.1 Sending domain suspended for bounce rate` — until an operator
//! lifts it (`DELETE /api/suspensions?domain=D`, `mxgate suspend lift D`).
//!
//! Fed by the [`Observer`](crate::report::Observer): every relayed recipient that
//! reaches a final outcome is one send (delivered, or bounced permanently, synchronously or
//! by a DSN later). Both the suspensions and the sliding windows are persisted in the
//! statistics RocksDB, so a restart neither lifts a suspension nor forgets how close a
//! domain was to one:
//!
//! - `u/<domain>` → the [`Suspension`] (JSON);
//! - `w/<domain>` → the window, compactly: version byte `1`, the number of sends `n`
//!   (u32 LE), then `n` outcome bits oldest first, packed LSB first (1 = permanent bounce);
//!   64 bytes for the default 500 sends. Written through on every recorded send, under the
//!   windows lock so the stored order is the recorded one; loaded once at start.
//!
//! The statistics store writes to its WAL without fsync (see [`crate::stats::store`]): a
//! process crash keeps every recorded send, a power loss may forget the last second of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::SuspensionConfig;
use crate::events::{Event, Events, Kind};
use crate::metrics::Metrics;
use crate::stats::store::{self, StatsError, Store};

/// Key prefix of persisted suspensions in the statistics store.
const PREFIX: &[u8] = store::SUSPENSIONS;
/// Key prefix of persisted send windows.
const WINDOWS: &[u8] = store::SEND_WINDOWS;
/// Version byte of an encoded window.
const WINDOW_V1: u8 = 1;

/// One suspended sending domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suspension {
    /// Lower-cased sending domain.
    pub domain: String,
    /// Why, in words (also the event's `reply`).
    pub reason: String,
    /// Permanent bounces and sends in the window when it tripped.
    pub bounces: usize,
    pub sends: usize,
    /// When, milliseconds since the epoch.
    pub created_ms: u64,
}

/// Handle on the suspensions and send windows, with the `[suspension]` config and the
/// events outbox it was built for; cheap to clone. A reload makes a new handle on the same
/// state ([`Suspensions::reconfigured`]): suspensions and windows are kept.
#[derive(Clone)]
pub struct Suspensions {
    inner: Arc<Inner>,
    cfg: Arc<SuspensionConfig>,
    /// Where `suspended` events go.
    events: Events,
}

struct Inner {
    store: Store,
    clock: Clock,
    metrics: Metrics,
    /// Suspended domains (the MAIL FROM fast path).
    suspended: RwLock<HashMap<String, Suspension>>,
    windows: Mutex<HashMap<String, Window>>,
}

/// The last `window` sends of one domain: `true` = permanent bounce.
#[derive(Default)]
struct Window {
    outcomes: VecDeque<bool>,
    bounces: usize,
}

fn key(domain: &str) -> Vec<u8> {
    prefixed(PREFIX, domain)
}

fn window_key(domain: &str) -> Vec<u8> {
    prefixed(WINDOWS, domain)
}

fn prefixed(prefix: &[u8], domain: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(domain.as_bytes());
    k
}

impl Window {
    /// `[1][n u32 LE][n bits, oldest first, LSB first]`.
    fn encode(&self) -> Vec<u8> {
        let n = self.outcomes.len();
        let mut v = Vec::with_capacity(5 + n.div_ceil(8));
        v.push(WINDOW_V1);
        v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        v.resize(5 + n.div_ceil(8), 0);
        for (i, bounced) in self.outcomes.iter().enumerate() {
            if *bounced {
                v[5 + i / 8] |= 1 << (i % 8);
            }
        }
        v
    }

    /// The inverse of [`Window::encode`], keeping the newest `cap` sends (the window may
    /// have shrunk since it was written); `None` for a value that is not a window.
    fn decode(v: &[u8], cap: usize) -> Option<Window> {
        let (&version, rest) = v.split_first()?;
        if version != WINDOW_V1 || rest.len() < 4 {
            return None;
        }
        let n = usize::try_from(u32::from_le_bytes(rest[..4].try_into().ok()?)).ok()?;
        let bits = &rest[4..];
        if bits.len() != n.div_ceil(8) {
            return None;
        }
        let mut w = Window::default();
        for i in n.saturating_sub(cap)..n {
            let bounced = bits[i / 8] & (1 << (i % 8)) != 0;
            w.outcomes.push_back(bounced);
            w.bounces += usize::from(bounced);
        }
        Some(w)
    }
}

impl Suspensions {
    /// Loads the persisted suspensions from `store`.
    pub fn open(
        cfg: SuspensionConfig,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        events: Events,
    ) -> Result<Suspensions, StatsError> {
        let mut suspended = HashMap::new();
        store.scan(
            PREFIX,
            &store::prefix_end(PREFIX),
            |_, v| match serde_json::from_slice::<Suspension>(v) {
                Ok(s) => {
                    suspended.insert(s.domain.clone(), s);
                }
                Err(e) => tracing::warn!(error = %e, "skipping a corrupt suspension record"),
            },
        )?;
        let mut windows = HashMap::new();
        store.scan(WINDOWS, &store::prefix_end(WINDOWS), |k, v| {
            let domain = String::from_utf8_lossy(&k[WINDOWS.len()..]).into_owned();
            match Window::decode(v, cfg.window) {
                Some(w) => {
                    windows.insert(domain, w);
                }
                None => tracing::warn!(domain, "skipping a corrupt bounce window record"),
            }
        })?;
        for d in suspended.keys() {
            metrics.domain_suspended(d, true);
        }
        if !suspended.is_empty() {
            tracing::warn!(domains = ?suspended.keys().collect::<Vec<_>>(), "sending domains suspended");
        }
        Ok(Suspensions {
            inner: Arc::new(Inner {
                store,
                clock,
                metrics,
                suspended: RwLock::new(suspended),
                windows: Mutex::new(windows),
            }),
            cfg: Arc::new(cfg),
            events,
        })
    }

    /// The same suspensions and windows under `cfg`, reporting to `events` (a reload).
    /// A shorter `window` trims a domain's window at its next send.
    pub fn reconfigured(&self, cfg: &SuspensionConfig, events: Events) -> Suspensions {
        Suspensions {
            inner: self.inner.clone(),
            cfg: Arc::new(cfg.clone()),
            events,
        }
    }

    /// The suspension of `domain`, if any (case-insensitive).
    pub fn get(&self, domain: &str) -> Option<Suspension> {
        self.inner
            .suspended
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    pub fn is_suspended(&self, domain: &str) -> bool {
        self.get(domain).is_some()
    }

    /// Every suspension, by domain.
    pub fn list(&self) -> Vec<Suspension> {
        let mut v: Vec<Suspension> = self
            .inner
            .suspended
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.domain.cmp(&b.domain));
        v
    }

    /// One send of `domain` reached a final outcome; `bounced` = permanent bounce. May
    /// suspend the domain (persisted, metric, event). Blocking (a store write when it trips).
    pub fn record(&self, domain: &str, bounced: bool) {
        let cfg = &self.cfg;
        if !cfg.enabled {
            return;
        }
        let domain = domain.to_ascii_lowercase();
        if self.is_suspended(&domain) {
            return;
        }
        let (bounces, sends) = {
            let mut windows = self
                .inner
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let w = windows.entry(domain.clone()).or_default();
            w.outcomes.push_back(bounced);
            w.bounces += usize::from(bounced);
            while w.outcomes.len() > cfg.window {
                if w.outcomes.pop_front() == Some(true) {
                    w.bounces -= 1;
                }
            }
            let (b, n) = (w.bounces, w.outcomes.len());
            if n < cfg.min_sends || (b as f64) * 100.0 <= cfg.threshold_percent * n as f64 {
                self.write(&window_key(&domain), Some(&w.encode()));
                return;
            }
            windows.remove(&domain);
            (b, n)
        };
        self.suspend(domain, bounces, sends);
    }

    /// Writes (`Some`) or deletes a window record; a failure only costs the memory of the
    /// window across a restart, so it is logged, not returned.
    fn write(&self, key: &[u8], value: Option<&[u8]>) {
        let r = match value {
            Some(v) => self.inner.store.put(key, v),
            None => self.inner.store.delete(key),
        };
        match r {
            Ok(()) | Err(StatsError::Closed) => {}
            Err(e) => tracing::warn!(error = %e, "cannot persist a bounce window"),
        }
    }

    fn suspend(&self, domain: String, bounces: usize, sends: usize) {
        let pct = bounces as f64 * 100.0 / sends as f64;
        let s = Suspension {
            reason: format!(
                "permanent bounce rate {pct:.1}% ({bounces} of the last {sends} sends) over {}%",
                self.cfg.threshold_percent
            ),
            domain,
            bounces,
            sends,
            created_ms: self.inner.clock.now_ms(),
        };
        match serde_json::to_vec(&s) {
            Ok(json) => {
                if let Err(e) = self.inner.store.put(&key(&s.domain), &json) {
                    tracing::warn!(domain = %s.domain, error = %e, "cannot persist a suspension");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a suspension"),
        }
        // Only now (a crash in between keeps both, and a lift removes both): the window
        // starts afresh once the suspension is lifted.
        self.write(&window_key(&s.domain), None);
        tracing::warn!(domain = %s.domain, reason = %s.reason, "sending domain suspended");
        self.inner.metrics.domain_suspended(&s.domain, true);
        self.events.emit(Event {
            id: 0,
            event: Kind::Suspended,
            timestamp: String::new(),
            queue_id: String::new(),
            message_id: String::new(),
            sender: s.domain.clone(),
            recipient: String::new(),
            reply: s.reason.clone(),
            category: None,
            status: None,
            attempts: 0,
            direction: "outbound",
            feedback_type: None,
            provider: None,
        });
        self.inner
            .suspended
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(s.domain.clone(), s);
    }

    /// Lifts the suspension of `domain`; `Ok(false)` when it was not suspended. Its bounce
    /// window starts afresh.
    pub fn lift(&self, domain: &str) -> Result<bool, StatsError> {
        let domain = domain.trim().to_ascii_lowercase();
        if !self.is_suspended(&domain) {
            return Ok(false);
        }
        self.inner.store.delete(&key(&domain))?;
        self.inner.store.delete(&window_key(&domain))?;
        self.inner
            .suspended
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain);
        self.inner
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain);
        self.inner.metrics.domain_suspended(&domain, false);
        tracing::info!(domain, "suspension lifted");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(outcomes: &[bool]) -> Window {
        Window {
            outcomes: outcomes.iter().copied().collect(),
            bounces: outcomes.iter().filter(|b| **b).count(),
        }
    }

    #[test]
    fn windows_encode_compactly_and_round_trip() {
        let outcomes: Vec<bool> = (0..500).map(|i| i % 7 == 3).collect();
        let w = window(&outcomes);
        let v = w.encode();
        assert_eq!(v.len(), 1 + 4 + 63);
        let back = Window::decode(&v, 500).expect("decode");
        assert_eq!(back.outcomes, w.outcomes);
        assert_eq!(back.bounces, w.bounces);
        let empty = Window::decode(&Window::default().encode(), 500).expect("empty");
        assert!(empty.outcomes.is_empty());
    }

    #[test]
    fn a_shrunk_window_keeps_the_newest_sends_and_junk_is_refused() {
        let w = window(&[true, true, false, false, true]);
        let back = Window::decode(&w.encode(), 3).expect("decode");
        assert_eq!(back.outcomes, [false, false, true]);
        assert_eq!(back.bounces, 1);
        assert!(Window::decode(b"", 10).is_none());
        assert!(Window::decode(&[2, 0, 0, 0, 0], 10).is_none());
        assert!(
            Window::decode(&[1, 9, 0, 0, 0, 0], 10).is_none(),
            "9 bits need 2 bytes"
        );
    }

    #[test]
    fn windows_survive_reopening_the_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = SuspensionConfig {
            enabled: true,
            window: 10,
            threshold_percent: 10.0,
            min_sends: 10,
        };
        let open = |store: &Store| {
            Suspensions::open(
                cfg.clone(),
                store.clone(),
                Clock::system(),
                Metrics::new(),
                Events::disabled(),
            )
            .expect("open")
        };
        let store = Store::open(dir.path()).expect("store");
        let s = open(&store);
        for i in 0..10 {
            s.record("Shop.test", i == 4);
        }
        assert!(!s.is_suspended("shop.test"), "1 of 10 is not over 10%");
        store.close();
        let store = Store::open(dir.path()).expect("reopen");
        let s = open(&store);
        s.record("shop.test", true);
        let got = s.get("shop.test").expect("2 of the last 10 sends trip it");
        assert_eq!((got.bounces, got.sends), (2, 10));
        assert_eq!(
            store.count(WINDOWS).expect("count"),
            0,
            "a tripped window is gone"
        );
    }
}
