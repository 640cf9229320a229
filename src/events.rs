//! Delivery events to the ERP (`[events] url`): one JSON object per POST —
//! `delivered`, `deferred`, `bounced`, `expired` — with queue id, Message-ID, sender,
//! recipient, the remote reply and the bounce category; `suspended` when a sending domain
//! is suspended for its bounce rate; `complained` when a spam complaint (RFC 5965 feedback
//! report) about one of our messages comes back, with `feedback_type` and `provider`.
//!
//! Durable outbox, not fire-and-forget: [`Events::emit`] writes the event into the
//! statistics RocksDB (`o/<id>`) and returns at once; one sender task POSTs the outbox in
//! order, deletes an event on a 2xx and retries with backoff (1 s doubling to
//! `events.retry_max`) otherwise. Delivery of mail never waits for the ERP's webhook, a
//! webhook that is down loses nothing (not even across a restart), and the ERP sees events
//! in the order they happened. A 4xx other than 408/429 means the receiver refuses that
//! event: it is dropped with a warning rather than blocking the ones behind it. `id` is
//! increasing and unique, so a receiver can ignore an event delivered twice (a crash between
//! the POST and the delete repeats it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{EventsConfig, HttpUrl, WebhookUrl};
use crate::live::View;
use crate::stats::store::{self, StatsError, Store};

/// What happened to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Delivered,
    Deferred,
    Bounced,
    Expired,
    /// A sending domain was suspended for its bounce rate (`sender` = the domain,
    /// `reply` = the reason; issue 6 item 7).
    Suspended,
    /// A recipient complained (RFC 5965 feedback report: `recipient` = the complaining
    /// address, `feedback_type`, `provider`; `queue_id`/`sender` when the report names one
    /// of our messages).
    Complained,
    /// This node lost the cluster's Redis (`sender` = the node, `reply` = why; issue 18):
    /// it works from its local copy, caps at `cap / cluster.nodes`.
    #[serde(rename = "cluster_down")]
    ClusterDown,
    /// This node reaches the cluster's Redis again; what it did meanwhile is replayed.
    #[serde(rename = "cluster_up")]
    ClusterUp,
    /// A submission login reached `max_messages_per_hour` (`sender` = the MAIL FROM,
    /// `reply` = the refusal with the login and its cap; issue 16 item 3). Raised once an
    /// hour per login while it stays over.
    #[serde(rename = "rate_limited")]
    RateLimited,
}

/// One event, as POSTed (JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Increasing, unique: the receiver's de-duplication key (also `X-Mxgate-Event-Id`).
    pub id: u64,
    pub event: Kind,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub queue_id: String,
    /// The message's `Message-ID` header, without angle brackets; empty when it has none.
    pub message_id: String,
    /// Envelope sender (empty for the null sender).
    pub sender: String,
    pub recipient: String,
    /// The remote side's last words (SMTP reply line, DSN diagnostic, HTTP status).
    pub reply: String,
    /// SPEC bounce category for `bounced`/`expired`, when known.
    pub category: Option<String>,
    /// Enhanced status code (`5.1.1`) when known.
    pub status: Option<String>,
    pub attempts: u32,
    /// `outbound` (relayed) or `inbound` (handed to an ERP route, with `events.inbound`).
    pub direction: &'static str,
    /// `complained` only: the RFC 5965 Feedback-Type (`abuse`, `fraud`, `virus`, `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
    /// `complained` only: the provider label of the complaining mailbox (`yahoo`, ...,
    /// `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// Handle to the outbox, with the `[events]` config it was built for; cheap to clone.
/// Every emit is a no-op while `url` is empty.
///
/// The outbox (store, id counter, sender wake-up) lives as long as the server; a reload
/// makes a new handle on it with the new config ([`Events::reconfigured`]), so events
/// already queued survive a change of `url` and go to the new one.
#[derive(Clone)]
pub struct Events {
    /// `None` only for [`Events::disabled`] (no store at all).
    outbox: Option<Arc<Outbox>>,
    cfg: Arc<EventsConfig>,
    /// Built with `cfg` (its `ca_file`, `tls_verify`): a reload that changes them takes effect
    /// at the next POST.
    client: crate::http_client::Client,
}

struct Outbox {
    store: Store,
    clock: Clock,
    last_id: AtomicU64,
    pending: AtomicU64,
    wake: Notify,
}

impl Events {
    /// Events that are dropped as they are emitted, with no outbox to enable later.
    pub fn disabled() -> Events {
        let cfg = EventsConfig::default();
        Events {
            outbox: None,
            client: client(&cfg),
            cfg: Arc::new(cfg),
        }
    }

    pub fn new(cfg: &EventsConfig, store: Store, clock: Clock) -> Result<Events, StatsError> {
        let last = store
            .last_key(store::OUTBOX)?
            .and_then(|k| parse_id(&k))
            .unwrap_or(0);
        let pending = store.count(store::OUTBOX)?;
        Ok(Events {
            outbox: Some(Arc::new(Outbox {
                store,
                clock,
                last_id: AtomicU64::new(last),
                pending: AtomicU64::new(pending),
                wake: Notify::new(),
            })),
            client: client(cfg),
            cfg: Arc::new(cfg.clone()),
        })
    }

    /// The same outbox under `cfg` (a reload); this handle keeps its own config.
    pub fn reconfigured(&self, cfg: &EventsConfig) -> Events {
        Events {
            outbox: self.outbox.clone(),
            client: client(cfg),
            cfg: Arc::new(cfg.clone()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.outbox.is_some() && self.cfg.url.get().is_some_and(|u| u.0.is_some())
    }

    /// Whether relayed-only events also cover deliveries to inbound routes.
    pub fn inbound(&self) -> bool {
        self.enabled() && self.cfg.inbound
    }

    /// Wakes the sender: it looks at its config and the outbox again (after a reload).
    pub fn wake(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.wake.notify_one();
        }
    }

    /// Puts `ev` in the outbox (its `id` and `timestamp` are set here) and wakes the sender.
    /// Never waits for the network.
    pub fn emit(&self, mut ev: Event) {
        let Some(outbox) = self.outbox.as_ref().filter(|_| self.enabled()) else {
            return;
        };
        let now_ms = outbox.clock.now_ms();
        // Time-based ids keep increasing across restarts even when the outbox was empty.
        let base = now_ms.saturating_mul(1000);
        let next = |prev: u64| (prev + 1).max(base);
        let prev = outbox
            .last_id
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(next(p)))
            .unwrap_or_else(|p| p);
        let id = next(prev);
        ev.id = id;
        ev.timestamp =
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(now_ms))
                .to_string();
        let json = match serde_json::to_vec(&ev) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an event");
                return;
            }
        };
        if let Err(e) = outbox.store.put(&outbox_key(id), &json) {
            if !matches!(e, StatsError::Closed) {
                tracing::warn!(error = %e, "cannot store an event; it is lost");
            }
            return;
        }
        let pending = outbox.pending.fetch_add(1, Ordering::SeqCst) + 1;
        if pending > self.cfg.max_pending {
            outbox.drop_oldest(self.cfg.max_pending);
        }
        outbox.wake.notify_one();
    }

    /// Sends the outbox until `shutdown`, each event under the config `current` holds
    /// then (a reload changes `url` for the next event). Returns at once without an outbox.
    pub async fn run(current: View<Events>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let events = current.get();
            let Some(outbox) = events.outbox.clone() else {
                return;
            };
            // Turned off by a reload: queued events wait for a `url` again.
            let next = if events.enabled() {
                outbox.first().await
            } else {
                Next::Empty
            };
            let (key, json) = match next {
                Next::Event(key, json) => (key, json),
                Next::Closed => return,
                Next::Empty => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = outbox.wake.notified() => continue,
                    }
                }
            };
            let id = parse_id(&key).unwrap_or(0);
            match tokio::select! {
                _ = shutdown.cancelled() => return,
                r = post(&events.cfg, &events.client, id, json) => r,
            } {
                Sent::Done => {
                    outbox.remove(&key);
                    backoff = Duration::from_secs(1);
                }
                Sent::Refused(why) => {
                    tracing::warn!(event_id = id, reason = %why, "events receiver refused an event; dropped");
                    outbox.remove(&key);
                }
                Sent::Later(why) => {
                    tracing::info!(event_id = id, reason = %why, retry_in = ?backoff, "events receiver unavailable");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    let max = events.cfg.retry_max.get().max(Duration::from_secs(1));
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }
}

fn client(cfg: &EventsConfig) -> crate::http_client::Client {
    crate::http_client::client("events", &cfg.trust())
}

/// What the outbox holds next for the sender.
enum Next {
    /// (key, JSON) of the oldest event.
    Event(Vec<u8>, Vec<u8>),
    Empty,
    /// The store is closed: the server is stopping.
    Closed,
}

enum Sent {
    Done,
    Refused(String),
    Later(String),
}

/// One POST of event `id` under `cfg`.
async fn post(
    cfg: &EventsConfig,
    client: &crate::http_client::Client,
    id: u64,
    json: Vec<u8>,
) -> Sent {
    let Some(WebhookUrl(Some(HttpUrl(uri)))) = cfg.url.get() else {
        return Sent::Later(format!("bad events.url: {:?}", cfg.url.as_str()));
    };
    let signature =
        crate::http_client::signature(&cfg.signing_secret, crate::http_client::unix_now(), &json);
    let mut req = match Request::post(uri).body(Full::new(Bytes::from(json))) {
        Ok(r) => r,
        Err(e) => return Sent::Later(format!("bad events.url: {e}")),
    };
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        HeaderName::from_static("x-mxgate-event-id"),
        HeaderValue::from(id),
    );
    if let Some(sig) = signature {
        h.insert(crate::http_client::SIGNATURE, sig);
    }
    if !cfg.token.is_empty()
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose()))
    {
        h.insert(AUTHORIZATION, v);
    }
    let timeout = cfg.timeout.get();
    let answer = tokio::time::timeout(timeout, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // Drain the body so the connection is reused.
        let _ = resp.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    match answer {
        Err(_) => Sent::Later(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Sent::Later(format!("{e}")),
        Ok(Ok(s)) if s.is_success() => Sent::Done,
        Ok(Ok(s)) if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 => {
            Sent::Refused(format!("HTTP {}", s.as_u16()))
        }
        Ok(Ok(s)) => Sent::Later(format!("HTTP {}", s.as_u16())),
    }
}

impl Outbox {
    /// The oldest event, if any (a read error counts as none: the sender looks again when
    /// woken).
    async fn first(&self) -> Next {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.first(store::OUTBOX, 1)).await {
            Ok(Ok(mut v)) => v
                .pop()
                .map_or(Next::Empty, |(k, json)| Next::Event(k, json)),
            Ok(Err(StatsError::Closed)) => Next::Closed,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the events outbox");
                Next::Empty
            }
            Err(_) => Next::Empty,
        }
    }

    fn remove(&self, key: &[u8]) {
        match self.store.delete(key) {
            Ok(()) => {
                let _ = self
                    .pending
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove a sent event; it may be sent again")
            }
        }
    }

    fn drop_oldest(&self, max_pending: u64) {
        if let Ok(first) = self.store.first(store::OUTBOX, 1)
            && let Some((k, _)) = first.first()
        {
            tracing::warn!(max_pending, "events outbox full: oldest event dropped");
            self.remove(k);
        }
    }
}

fn outbox_key(id: u64) -> Vec<u8> {
    let mut k = store::OUTBOX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn parse_id(k: &[u8]) -> Option<u64> {
    let rest = k.strip_prefix(store::OUTBOX)?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}
