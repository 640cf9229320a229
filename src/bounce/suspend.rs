//! Auto-suspension of sending domains (issue 6 item 7): when the permanent bounce rate of a
//! sending domain over its last `suspension.window` sends passes
//! `suspension.threshold_percent`, the domain is suspended — submission refuses its mail at
//! MAIL FROM with `550 5.7.1 Sending domain suspended for bounce rate` — until an operator
//! lifts it (`DELETE /api/suspensions?domain=D`, `mxgate suspend lift D`).
//!
//! Fed by the [`Observer`](crate::stats::observe::Observer): every relayed recipient that
//! reaches a final outcome is one send (delivered, or bounced permanently, synchronously or
//! by a DSN later). The sliding windows live in memory (a restart starts them afresh); the
//! suspensions themselves are persisted in the statistics RocksDB under `u/<domain>` (JSON),
//! so a restart keeps a domain suspended.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::SuspensionConfig;
use crate::events::{Event, Events, Kind};
use crate::metrics::Metrics;
use crate::stats::store::{self, StatsError, Store};

/// Key prefix of persisted suspensions in the statistics store.
const PREFIX: &[u8] = b"u/";

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

/// Handle; cheap to clone.
#[derive(Clone)]
pub struct Suspensions {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SuspensionConfig,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    events: Events,
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
    let mut k = PREFIX.to_vec();
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
        for d in suspended.keys() {
            metrics.domain_suspended(d, true);
        }
        if !suspended.is_empty() {
            tracing::warn!(domains = ?suspended.keys().collect::<Vec<_>>(), "sending domains suspended");
        }
        Ok(Suspensions {
            inner: Arc::new(Inner {
                cfg,
                store,
                clock,
                metrics,
                events,
                suspended: RwLock::new(suspended),
                windows: Mutex::new(HashMap::new()),
            }),
        })
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
        let cfg = &self.inner.cfg;
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
                return;
            }
            windows.remove(&domain);
            (b, n)
        };
        self.suspend(domain, bounces, sends);
    }

    fn suspend(&self, domain: String, bounces: usize, sends: usize) {
        let pct = bounces as f64 * 100.0 / sends as f64;
        let s = Suspension {
            reason: format!(
                "permanent bounce rate {pct:.1}% ({bounces} of the last {sends} sends) over {}%",
                self.inner.cfg.threshold_percent
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
        tracing::warn!(domain = %s.domain, reason = %s.reason, "sending domain suspended");
        self.inner.metrics.domain_suspended(&s.domain, true);
        self.inner.events.emit(Event {
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
