//! The hook where delivery outcomes become metrics, statistics and ERP events: the delivery
//! worker calls [`Observer::attempt_from`] after the queue recorded an attempt, the bounce
//! intake calls [`Observer::dsn`] after a DSN marked a recipient `bounced`. One place decides
//! what is counted, so the Prometheus counters, the dashboard and the webhook agree.
//!
//! This file holds the handle and those entry points, which decide whether and as what an
//! outcome is reported; [`count`] does the counting (metrics, statistics, suppression,
//! suspension), [`event`] builds the ERP event and [`message_info`] reads the message's
//! header. Counting always runs before the event is emitted.

mod count;
mod event;
mod message_info;

pub use message_info::{MessageInfo, email_type};

use std::collections::HashSet;
use std::sync::Arc;

use crate::bounce::{Category, RecipientResult};
use crate::clock::Clock;
use crate::config::Config;
use crate::envelope::{Destination, QueueId};
use crate::events::{Events, Kind};
use crate::metrics::Metrics;
use crate::queue::{Outcome, Queue, QueuedMessage, RcptState, Recipient};

use crate::stats::Stats;

/// What the attempts behind a reported outcome amount to.
struct Tried {
    /// The local IP the last attempt left from.
    sending_ip: Option<std::net::IpAddr>,
    /// Attempts made, this one included.
    attempts: u32,
}

/// One reported attempt, as counting and event building see it.
struct Attempted<'a> {
    msg: &'a QueuedMessage,
    rcpt: &'a Recipient,
    info: &'a MessageInfo,
    kind: Kind,
    /// The remote's words (or the deferral reason).
    reply: String,
    /// The category the delivery gave a bounce, if any.
    category: Option<Category>,
    tried: Tried,
    /// Relayed (counted), not handed to an ERP route.
    outbound: bool,
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
    /// Synchronous hard bounces of relayed mail suppress the recipient.
    suppressions: crate::suppression::SuppressionList,
    /// Final outcomes feed the bounce-rate suspension of sending domains.
    suspensions: crate::suspension::Suspensions,
}

/// Where an [`Observer`] reports outcomes.
pub struct Sinks {
    pub stats: Stats,
    pub events: Events,
    pub metrics: Metrics,
    pub suppressions: crate::suppression::SuppressionList,
    pub suspensions: crate::suspension::Suspensions,
}

impl Observer {
    /// The observer of `config`'s domains (built anew on reload: the enrolled and alias
    /// domains are config).
    pub fn new(config: &Config, sinks: Sinks, clock: Clock, queue: Queue) -> Observer {
        let domains = config
            .submission
            .users
            .iter()
            .flat_map(|u| u.domains.iter())
            .chain(config.domains.iter().map(|d| &d.name))
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let Sinks {
            stats,
            events,
            metrics,
            suppressions,
            suspensions,
        } = sinks;
        Observer {
            inner: Arc::new(Inner {
                domains,
                stats,
                events,
                metrics,
                clock,
                queue,
                suppressions,
                suspensions,
            }),
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
            Outcome::Bounced { category, reply } => (reply.clone(), *category),
        };
        let a = Attempted {
            msg,
            rcpt,
            info,
            kind,
            reply,
            category,
            tried,
            outbound,
        };
        let bounce_info = if outbound {
            self.count_outbound(&a)
        } else {
            None
        };
        if self.inner.events.enabled() && (outbound || self.inner.events.inbound()) {
            let e = event::attempt_event(a, bounce_info.as_ref());
            self.inner.events.emit(e);
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
        let category = self.count_dsn(&msg, idx, failed);
        let e = event::dsn_event(&msg, rcpt, info.message_id, failed, category);
        self.inner.events.emit(e);
    }
}
