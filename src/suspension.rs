//! Auto-suspension of sending domains (issue 6 item 7): when the permanent bounce rate of a
//! sending domain over its last `suspension.window` sends passes
//! `suspension.threshold_percent`, the domain is suspended — submission refuses its mail at
//! MAIL FROM with `550 5.7.1 Sending domain suspended for bounce rate` — until an operator
//! lifts it (`DELETE /api/suspensions?domain=D`, `mxgate suspend lift D`).
//!
//! Likewise for spam complaints (issue 17 item 7): complaints over the same last `window`
//! sends ([`window::Window`] keeps both) above `suspension.complaint_threshold_percent`,
//! with the same `min_sends`, suspend the domain ("... for complaint rate"). The
//! suspension itself is shared in a cluster like a bounce-rate one; the complaint count is
//! the node's own (a complaint is judged against the sends of the node that received it).
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

mod complaints;
mod shared;
mod shared_window;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::SuspensionConfig;
use crate::events::{Event, Events, Kind};
use crate::metrics::Metrics;
use crate::stats::store::{self, StatsError, Store};
use window::Window;

/// Key prefix of persisted suspensions in the statistics store.
const PREFIX: &[u8] = store::SUSPENSIONS;
/// Key prefix of persisted send windows.
const WINDOWS: &[u8] = store::SEND_WINDOWS;

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
    /// Complaints in the window when a complaint-rate suspension tripped (0 = tripped by
    /// the bounce rate).
    #[serde(default)]
    pub complaints: usize,
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
    /// The cluster suspensions are shared with (issue 18), set once at start.
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    shared: shared::Shared,
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
                cluster: std::sync::OnceLock::new(),
                shared: shared::Shared::default(),
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
    /// suspend the domain (persisted, metric, event). Judged on the cluster's window when
    /// the cluster's Redis answers (one round trip), else on this node's. Blocking (store
    /// writes).
    pub async fn record(&self, domain: &str, bounced: bool) {
        let cfg = &self.cfg;
        if !cfg.enabled {
            return;
        }
        let domain = domain.to_ascii_lowercase();
        if self.is_suspended(&domain) {
            return;
        }
        // The node's own window is kept either way: it is what judges once Redis is gone.
        let (local, complaints) = self.record_local(&domain, bounced);
        let tripped = match self.record_shared(&domain, bounced).await {
            Some(shared) => shared,
            None => window::trips(cfg, local.0, local.1).then_some(local),
        };
        if let Some((bounces, sends)) = tripped {
            self.forget_window(&domain);
            self.suspend(self.bounce_suspension(domain, bounces, sends));
        } else if window::complaints_trip(cfg, complaints.0, complaints.1) {
            // Complaints that came early in a domain's life judge once it has the volume.
            self.forget_window(&domain);
            let s = self.complaint_suspension(domain, complaints.0, complaints.1);
            self.suspend(s);
        }
    }

    pub(super) fn forget_window(&self, domain: &str) {
        self.inner
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(domain);
    }

    /// Adds the send to this node's window (persisted): ((bounces, sends), (complaints,
    /// sends)) in it after.
    fn record_local(&self, domain: &str, bounced: bool) -> ((usize, usize), (usize, usize)) {
        let mut windows = self
            .inner
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let w = windows.entry(domain.to_string()).or_default();
        let counts = w.push(bounced, self.cfg.window);
        self.write(&window_key(domain), Some(&w.encode()));
        (counts, w.complaint_counts())
    }

    /// Writes (`Some`) or deletes a window record; a failure only costs the memory of the
    /// window across a restart, so it is logged, not returned.
    pub(super) fn write(&self, key: &[u8], value: Option<&[u8]>) {
        let r = match value {
            Some(v) => self.inner.store.put(key, v),
            None => self.inner.store.delete(key),
        };
        match r {
            Ok(()) | Err(StatsError::Closed) => {}
            Err(e) => tracing::warn!(error = %e, "cannot persist a bounce window"),
        }
    }

    /// Persists this node's view of `domain` (`Some` = suspended, `None` = lifted) in one
    /// synced batch: the `u/` record, the end of the window and, when the change is made
    /// here and shared (`publish`), its outbox record, so a change made while Redis is down
    /// reaches Redis even across a restart. Synced although statistics are not: changes are
    /// rare and an operator's lift must not come back after a power loss.
    fn persist(&self, domain: &str, s: Option<&Suspension>, publish: bool) {
        let json = match s.map(serde_json::to_vec).transpose() {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(domain, error = %e, "cannot encode a suspension");
                return;
            }
        };
        let published = self.inner.store.with(|db| {
            let mut batch = rocksdb::WriteBatch::default();
            match &json {
                Some(j) => db.put_in(&mut batch, key(domain), j),
                None => db.delete_in(&mut batch, key(domain)),
            }
            db.delete_in(&mut batch, window_key(domain));
            let published = publish && self.outbox_put(db, &mut batch, domain, json.as_deref());
            db.write(batch, true)?;
            Ok(published)
        });
        match published {
            Ok(true) => self.published(),
            Ok(false) | Err(StatsError::Closed) => {}
            Err(e) => tracing::warn!(domain, error = %e, "cannot persist a suspension change"),
        }
    }

    fn bounce_suspension(&self, domain: String, bounces: usize, sends: usize) -> Suspension {
        let pct = bounces as f64 * 100.0 / sends as f64;
        Suspension {
            reason: format!(
                "permanent bounce rate {pct:.1}% ({bounces} of the last {sends} sends) over {}%",
                self.cfg.threshold_percent
            ),
            domain,
            bounces,
            sends,
            complaints: 0,
            created_ms: self.inner.clock.now_ms(),
        }
    }

    pub(super) fn suspend(&self, s: Suspension) {
        // The window goes with it (a crash keeps both or neither): it starts afresh once
        // the suspension is lifted.
        self.persist(&s.domain, Some(&s), true);
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
        self.lift_local(&domain, true);
        Ok(true)
    }

    /// The lift itself, on this node; `publish` = made here (not another node's lift).
    fn lift_local(&self, domain: &str, publish: bool) {
        self.persist(domain, None, publish);
        self.inner
            .suspended
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(domain);
        self.inner
            .windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(domain);
        self.inner.metrics.domain_suspended(domain, false);
        tracing::info!(domain, "suspension lifted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_survive_reopening_the_store() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = SuspensionConfig {
            enabled: true,
            window: 10,
            threshold_percent: 10.0,
            complaint_threshold_percent: 0.3,
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
            s.record("Shop.test", i == 4).await;
        }
        assert!(!s.is_suspended("shop.test"), "1 of 10 is not over 10%");
        store.close();
        let store = Store::open(dir.path()).expect("reopen");
        let s = open(&store);
        s.record("shop.test", true).await;
        let got = s.get("shop.test").expect("2 of the last 10 sends trip it");
        assert_eq!((got.bounces, got.sends), (2, 10));
        assert_eq!(
            store.count(WINDOWS).expect("count"),
            0,
            "a tripped window is gone"
        );
    }
}
