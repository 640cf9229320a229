//! The hook where delivery outcomes become metrics, statistics and ERP events: the delivery
//! worker calls [`Observer::attempt`] after the queue recorded an attempt, the bounce intake
//! calls [`Observer::dsn`] after a DSN marked a recipient `bounced`. One place decides what
//! is counted, so the Prometheus counters, the dashboard and the webhook agree.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bounce::{self, Category, RecipientResult};
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::Outcome;
use crate::envelope::QueueId;
use crate::events::{Event, Events, Kind};
use crate::metrics::{BounceLabels, Metrics};
use crate::queue::{Queue, QueuedMessage, RcptState, Recipient};
use crate::routing::Destination;

use super::{BounceInfo, Dims, Stats};

/// What the observer needs from a message's header (read once per attempt).
#[derive(Clone, Debug, Default)]
pub struct MessageInfo {
    /// `Message-ID` without angle brackets.
    pub message_id: String,
    pub email_type: &'static str,
}

impl MessageInfo {
    /// Reads the header section of `raw` (bounded).
    pub fn from_message(raw: &[u8]) -> MessageInfo {
        let head = header_section(raw);
        let text = String::from_utf8_lossy(head);
        let mut message_id = String::new();
        let mut bulk = false;
        for (name, value) in header_fields(&text) {
            let v = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "message-id" if message_id.is_empty() => {
                    message_id = v.trim_start_matches('<').trim_end_matches('>').to_string();
                }
                "list-unsubscribe" | "list-id" => bulk = true,
                "precedence" => {
                    bulk |= matches!(v.to_ascii_lowercase().as_str(), "bulk" | "list" | "junk")
                }
                _ => {}
            }
        }
        MessageInfo {
            message_id,
            email_type: if bulk { "mass" } else { "transactional" },
        }
    }
}

/// What the attempts behind a reported outcome amount to.
struct Tried {
    /// The local IP the last attempt left from.
    sending_ip: Option<std::net::IpAddr>,
    /// Attempts made, this one included.
    attempts: u32,
}

/// `email_type` label guessed from the headers: `mass` when the message carries list headers
/// (`List-Unsubscribe`, `List-Id`) or `Precedence: bulk|list|junk`, else `transactional`.
/// Only a fallback: the stream stored with a queued message wins (see `attempt`/`dsn`).
pub fn email_type(raw: &[u8]) -> &'static str {
    MessageInfo::from_message(raw).email_type
}

fn header_section(raw: &[u8]) -> &[u8] {
    let raw = &raw[..raw.len().min(64 * 1024)];
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &raw[..i])
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| &raw[..i]))
        .unwrap_or(raw)
}

/// Unfolded `(name, value)` pairs.
fn header_fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_string(), v.to_string()));
        }
    }
    out
}

/// Metrics + statistics + events, fed where outcomes are recorded.
#[derive(Clone)]
pub struct Observer {
    inner: Arc<Inner>,
}

struct Inner {
    /// Enrolled sending domains and alias domains: the `sending_domain` label's values
    /// (others, e.g. from a trusted network relaying anything, count as `other`).
    domains: HashSet<String>,
    stats: Stats,
    events: Events,
    metrics: Metrics,
    clock: Clock,
    queue: Queue,
    /// Synchronous hard bounces of relayed mail suppress the recipient (set by the server).
    suppressions: std::sync::OnceLock<crate::bounce::SuppressionList>,
    /// Final outcomes feed the bounce-rate suspension of sending domains (set by the server).
    suspensions: std::sync::OnceLock<crate::bounce::suspend::Suspensions>,
}

impl Observer {
    pub fn new(
        config: &Config,
        stats: Stats,
        events: Events,
        metrics: Metrics,
        clock: Clock,
        queue: Queue,
    ) -> Observer {
        let domains = config
            .submission
            .users
            .iter()
            .flat_map(|u| u.domains.iter())
            .chain(config.domains.iter().map(|d| &d.name))
            .map(|d| d.to_ascii_lowercase())
            .collect();
        Observer {
            inner: Arc::new(Inner {
                domains,
                stats,
                events,
                metrics,
                clock,
                queue,
                suppressions: std::sync::OnceLock::new(),
                suspensions: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Feeds permanent `Invalid address` / `Mailbox` bounces of relayed recipients to `list`.
    pub fn with_suppressions(self, list: crate::bounce::SuppressionList) -> Observer {
        let _ = self.inner.suppressions.set(list);
        self
    }

    /// Feeds final outcomes of enrolled sending domains to the bounce-rate suspension.
    pub fn with_suspensions(self, s: crate::bounce::suspend::Suspensions) -> Observer {
        let _ = self.inner.suspensions.set(s);
        self
    }

    /// One final send of `sending_domain` (a label: `other` is not tracked).
    fn count_send(&self, sending_domain: &str, permanent_bounce: bool) {
        if let Some(s) = self.inner.suspensions.get()
            && sending_domain != "other"
        {
            s.record(sending_domain, permanent_bounce);
        }
    }

    /// The IP recipient `rcpt` of `id` was delivered from (`""` when unknown).
    pub fn sending_ip(&self, id: QueueId, rcpt: u16) -> String {
        self.inner.stats.sending_ip_of(id, rcpt)
    }

    /// The relayed message delivered with `message_id`, when remembered (blocking read).
    pub fn message_of(&self, message_id: &str) -> Option<QueueId> {
        self.inner.stats.message_of(message_id)
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// A recipient held by warming (no attempt made) expired: counted and reported like
    /// an expiry after attempts, with the attempt count the queue kept.
    pub fn held_expired(
        &self,
        msg: &QueuedMessage,
        rcpt: &Recipient,
        info: &MessageInfo,
        reason: &str,
    ) {
        let tried = Tried {
            sending_ip: None,
            attempts: rcpt.attempts,
        };
        let outcome = Outcome::deferred(reason);
        self.report(msg, rcpt, info, &outcome, RcptState::Expired, tried);
    }

    /// After the queue recorded `outcome` of an attempt for `rcpt` (as it was before the
    /// attempt) of `msg`; `state` is the recipient's new state, `sending_ip` the local IP
    /// the message left from.
    pub fn attempt_from(
        &self,
        msg: &QueuedMessage,
        rcpt: &Recipient,
        info: &MessageInfo,
        outcome: &Outcome,
        state: RcptState,
        sending_ip: Option<std::net::IpAddr>,
    ) {
        let tried = Tried {
            sending_ip,
            attempts: rcpt.attempts.saturating_add(1),
        };
        self.report(msg, rcpt, info, outcome, state, tried);
    }

    fn report(
        &self,
        msg: &QueuedMessage,
        rcpt: &Recipient,
        info: &MessageInfo,
        outcome: &Outcome,
        state: RcptState,
        tried: Tried,
    ) {
        let Tried {
            sending_ip,
            attempts,
        } = tried;
        let outbound = matches!(rcpt.dest, Destination::Relay);
        // DSNs mxgate sends itself (null sender) are not the ERP's sends: neither counted
        // nor reported, like the `bounce+TOKEN` copies stored for the bounce stage.
        if matches!(rcpt.dest, Destination::Bounce { .. }) || (outbound && msg.mail_from.is_empty())
        {
            return;
        }
        let kind = match state {
            RcptState::Sent => Kind::Delivered,
            RcptState::Bounced => Kind::Bounced,
            RcptState::Expired => Kind::Expired,
            RcptState::Deferred | RcptState::Queued => Kind::Deferred,
            RcptState::Cancelled => return,
        };
        let (reply, category) = match outcome {
            Outcome::Sent { reply } => (reply.clone(), None),
            Outcome::Deferred { reason, .. } => (reason.clone(), None),
            Outcome::Bounced { category, reply } => (reply.clone(), category.clone()),
        };
        let now = self.inner.clock.now_ms();
        let mut bounce_info = None;
        if outbound {
            let mut dims = self.dims(msg, &rcpt.address, info.email_type, &reply);
            if let Some(ip) = sending_ip {
                dims.sending_ip = ip.to_string();
            }
            match kind {
                Kind::Delivered => {
                    if !info.message_id.is_empty() {
                        self.inner
                            .stats
                            .remember_message_id(&info.message_id, msg.id);
                    }
                    if let Some(ip) = sending_ip {
                        let idx = msg
                            .recipients
                            .iter()
                            .position(|r| r.address == rcpt.address);
                        if let Some(idx) = idx.and_then(|i| u16::try_from(i).ok()) {
                            self.inner
                                .stats
                                .remember_sending_ip(msg.id, idx, &ip.to_string());
                        }
                    }
                    self.inner.metrics.delivered(
                        &dims.sending_domain,
                        &dims.provider,
                        &dims.email_type,
                        &dims.sending_ip,
                    );
                    self.inner.stats.delivered(now, &dims);
                    self.count_send(&dims.sending_domain, false);
                }
                Kind::Bounced | Kind::Expired => {
                    let b = classify(&reply, category.as_deref(), kind == Kind::Expired);
                    self.count_bounce(now, &dims, &b, true);
                    if kind == Kind::Bounced {
                        self.suppress(&rcpt.address, &b, &reply, msg.id);
                    }
                    self.count_send(&dims.sending_domain, kind == Kind::Bounced && b.permanent);
                    bounce_info = Some(b);
                }
                Kind::Deferred | Kind::Suspended | Kind::Complained => {}
            }
        }
        if self.inner.events.enabled() && (outbound || self.inner.events.inbound()) {
            let category = bounce_info
                .as_ref()
                .map(|b| b.category.as_str().to_string())
                .or(category);
            self.inner.events.emit(Event {
                id: 0,
                event: kind,
                timestamp: String::new(),
                queue_id: msg.id.to_string(),
                message_id: info.message_id.clone(),
                sender: msg.mail_from.clone(),
                recipient: rcpt.address.clone(),
                status: bounce_info
                    .as_ref()
                    .map(|b| b.status.clone())
                    .filter(|s| !s.is_empty()),
                reply,
                category,
                attempts,
                direction: if outbound { "outbound" } else { "inbound" },
                feedback_type: None,
                provider: None,
            });
        }
    }

    /// A DSN closed the loop: recipient `idx` of message `id` is now `bounced` (the caller
    /// checked that the queue recorded it). Counts the bounce and emits the event.
    pub async fn dsn(&self, id: QueueId, idx: u16, failed: &RecipientResult) {
        let queue = self.inner.queue.clone();
        let loaded = tokio::task::spawn_blocking(move || (queue.get(id), queue.body(id))).await;
        let Ok((Some(msg), body)) = loaded else {
            return;
        };
        let Some(rcpt) = msg.recipients.get(usize::from(idx)) else {
            return;
        };
        let info = body
            .as_deref()
            .map(MessageInfo::from_message)
            .unwrap_or_default();
        let email_type = msg.stream.as_str();
        let dims = Dims {
            sending_domain: self.sending_domain(&msg.mail_from),
            email_type: email_type.to_string(),
            sending_ip: self.inner.stats.sending_ip_of(id, idx),
            provider: failed.provider.as_label().to_string(),
        };
        let category = failed.category.unwrap_or(Category::RecipientError);
        let b = BounceInfo {
            category,
            reply_code: failed.reply_code.map(|c| c.to_string()).unwrap_or_default(),
            status: failed.status.clone().unwrap_or_default(),
            permanent: failed.kind != Some(bounce::DeliveryKind::Transient),
        };
        let now = self.inner.clock.now_ms();
        // Metrics for DSNs are counted by the intake itself (also for DSNs without a token).
        self.count_bounce(now, &dims, &b, false);
        if b.permanent {
            self.count_send(&dims.sending_domain, true);
        }
        self.inner.events.emit(Event {
            id: 0,
            event: Kind::Bounced,
            timestamp: String::new(),
            queue_id: msg.id.to_string(),
            message_id: info.message_id,
            sender: msg.mail_from.clone(),
            recipient: rcpt.address.clone(),
            reply: rcpt
                .last_reply
                .clone()
                .unwrap_or_else(|| failed.diagnostic.clone()),
            category: Some(category.as_str().to_string()),
            status: failed.status.clone(),
            attempts: rcpt.attempts,
            direction: "outbound",
            feedback_type: None,
            provider: None,
        });
    }

    /// Metrics first, statistics last (tests wait for the statistics to see both).
    /// A synchronous hard bounce puts the address on the suppression list (off the async
    /// threads: the store syncs each write).
    fn suppress(&self, address: &str, b: &BounceInfo, reply: &str, id: QueueId) {
        let Some(list) = self.inner.suppressions.get() else {
            return;
        };
        if !crate::bounce::suppress::suppresses_category(b.category, b.permanent) {
            return;
        }
        let (list, address, reason) = (list.clone(), address.to_string(), b.category.as_str());
        let detail = format!("{} (message {id})", reply.trim());
        let task = move || {
            let r = list.add_blocking(
                &address,
                reason,
                crate::bounce::SuppressionSource::Bounce,
                Some(&detail),
            );
            match r {
                Ok((added, _)) => {
                    tracing::info!(rcpt = %address, reason, ?added, "address suppressed")
                }
                Err(e) => {
                    tracing::warn!(rcpt = %address, error = %e, "cannot record the suppression")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(task)),
            Err(_) => task(),
        }
    }

    fn count_bounce(&self, now: u64, dims: &Dims, b: &BounceInfo, metrics: bool) {
        if metrics {
            self.count_bounce_metrics(dims, b);
        }
        self.inner.stats.bounced(now, dims, b);
    }

    fn count_bounce_metrics(&self, dims: &Dims, b: &BounceInfo) {
        self.inner.metrics.bounce(&BounceLabels {
            category: b.category.as_str(),
            provider: &dims.provider,
            sending_domain: &dims.sending_domain,
            email_type: &dims.email_type,
            sending_ip: &dims.sending_ip,
            kind: if b.permanent {
                "permanent"
            } else {
                "transient"
            },
        });
        if b.category == Category::Blocked && dims.provider != bounce::Provider::Other.as_label() {
            self.inner.metrics.esp_block(&dims.provider);
        }
    }

    /// The `sending_domain` label of a sender: its domain when enrolled or served, else `other`.
    pub fn sending_domain(&self, mail_from: &str) -> String {
        let d = domain_of(mail_from);
        if self.inner.domains.contains(&d) {
            d
        } else {
            "other".to_string()
        }
    }

    fn dims(&self, msg: &QueuedMessage, rcpt: &str, email_type: &str, reply: &str) -> Dims {
        Dims {
            sending_domain: self.sending_domain(&msg.mail_from),
            email_type: email_type.to_string(),
            sending_ip: String::new(),
            provider: bounce::detect_provider(Some(rcpt), &[], reply)
                .as_label()
                .to_string(),
        }
    }
}

/// A synchronous refusal (5xx) or an expiry → category, codes, permanence.
fn classify(reply: &str, category: Option<&str>, expired: bool) -> BounceInfo {
    let code = bounce::find_reply_code(reply);
    let status = bounce::find_status(reply).map(str::to_string);
    let c = bounce::classify_reply(code, status.as_deref(), reply);
    let category = if expired {
        Category::RecipientError
    } else {
        category.and_then(Category::from_name).unwrap_or(c.category)
    };
    BounceInfo {
        category,
        reply_code: code.map(|c| c.to_string()).unwrap_or_default(),
        status: status.unwrap_or_else(|| {
            if expired {
                "4.4.7".into()
            } else {
                String::new()
            }
        }),
        // An expiry is final: the message is given up on, like a 5xx.
        permanent: true,
    }
}

/// Lower-cased domain of an address; `unknown` for the null sender or junk. The sending
/// domains are the enrolled ones, so the label set stays small.
fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_info_reads_message_id_and_bulk_headers() {
        let raw = b"Received: x\r\nMessage-ID:\r\n <abc@erp.test>\r\nList-Unsubscribe: <mailto:u@x>\r\n\r\nbody";
        let i = MessageInfo::from_message(raw);
        assert_eq!(i.message_id, "abc@erp.test");
        assert_eq!(i.email_type, "mass");
        let i = MessageInfo::from_message(b"Message-ID: <x@y>\n\nList-Id: not a header");
        assert_eq!(i.email_type, "transactional");
    }

    #[test]
    fn synchronous_refusals_and_expiry_classify() {
        let b = classify("550 5.1.1 <x@gmail.com>: user unknown", None, false);
        assert_eq!(b.category, Category::InvalidAddress);
        assert_eq!((b.reply_code.as_str(), b.status.as_str()), ("550", "5.1.1"));
        let e = classify("421 4.4.2 connection timed out", None, true);
        assert_eq!(e.category, Category::RecipientError);
        assert!(e.permanent);
        assert_eq!(domain_of("Bob@Example.TEST"), "example.test");
        assert_eq!(domain_of(""), "unknown");
    }
}
