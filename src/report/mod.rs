//! The one outcome sink: every outcome — an attempt the queue recorded, a DSN or a spam
//! complaint that came back — arrives as one [`Record`] at [`Observer::report`], and this
//! module alone turns it into metrics, statistics, ERP events, suppressions and suspension
//! samples. One place decides what is counted, so the Prometheus counters, the dashboard,
//! the webhook and the suppression list agree.
//!
//! This file holds the handle and the entry point, which decides whether and as what an
//! outcome is reported; `record` is the [`Record`], `count` does the counting (metrics,
//! statistics, suspension), `suppress` applies the rules of which outcomes stop mail to an
//! address, `event` and `complaint` build the ERP events and `message_info` reads the
//! message's header. Counting always runs before the event is emitted.

mod complaint;
mod count;
mod event;
mod message_info;
mod record;
mod suppress;

pub use message_info::{MessageInfo, email_type};
pub use record::{Attempt, Failure, Origin, Record, Returned};

use std::collections::HashSet;
use std::sync::Arc;

use crate::bounce::RecipientResult;
use crate::clock::Clock;
use crate::config::Config;
use crate::envelope::{Destination, QueueId};
use crate::events::{Events, Kind};
use crate::metrics::Metrics;
use crate::queue::{Queue, RcptState};

use crate::stats::Stats;

/// The outcome sink: metrics, statistics, events, suppression and suspension.
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
    /// Hard bounces (synchronous or by DSN) and complaints suppress the recipient.
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

    /// The one entry point: reports `record` everywhere it counts. The statistics of an
    /// [`Record::Attempt`] are not written here: the queue committed them with the
    /// attempt's record ([`Observer::stats_writes`]).
    pub async fn report(&self, record: Record<'_>) {
        match record {
            Record::Attempt(a) => self.attempt(a).await,
            Record::Returned(r) => self.returned(r).await,
        }
    }

    /// An attempt the queue recorded, its statistics already committed with it
    /// ([`Observer::stats_writes`]): metrics, suspension and suppression, then the event.
    async fn attempt(&self, a: Attempt<'_>) {
        let Some(kind) = self.counted_kind(&a) else {
            return;
        };
        let outbound = a.outbound();
        let bounce_info = if outbound {
            self.count_outbound(&a, kind).await
        } else {
            None
        };
        if self.inner.events.enabled() && (outbound || self.inner.events.inbound()) {
            let e = event::attempt_event(a, kind, bounce_info.as_ref());
            self.inner.events.emit(e);
        }
    }

    /// What an attempt is reported as, `None` when it is not reported at all. Shared by
    /// [`Observer::report`] and [`Observer::stats_writes`], so the statistics committed
    /// with the queue's record and the rest of the report agree.
    fn counted_kind(&self, a: &Attempt<'_>) -> Option<Kind> {
        // DSNs mxgate sends itself (null sender) are not the ERP's sends: neither counted
        // nor reported, like the `bounce+TOKEN` copies stored for the bounce stage.
        if matches!(a.rcpt.dest, Destination::Bounce { .. })
            || (a.outbound() && a.msg.mail_from.is_empty())
        {
            return None;
        }
        match a.state {
            RcptState::Sent => Some(Kind::Delivered),
            RcptState::Bounced => Some(Kind::Bounced),
            RcptState::Expired => Some(Kind::Expired),
            RcptState::Deferred | RcptState::Queued => Some(Kind::Deferred),
            RcptState::Cancelled | RcptState::Held => None,
        }
    }

    /// A DSN or complaint came back: counted (metrics of every classified recipient), then,
    /// per original recipient its tokens name, the bounce the queue recorded counted and
    /// reported, a hard bounce or a complaint suppressed; a complaint becomes events.
    async fn returned(&self, r: Returned<'_>) {
        self.count_returned(&r);
        for origin in r.origins {
            if let Some(f) = r.failure.as_ref().filter(|_| origin.bounced) {
                self.dsn(origin.id, origin.rcpt, f.result).await;
            }
            self.suppress_returned(&r, origin).await;
        }
        if complaint::tells_erp(r.report) {
            self.complained(r.dsn, r.report, r.origins).await;
        }
    }

    /// A DSN closed the loop: recipient `idx` of message `id` is now `bounced` (the queue
    /// recorded it). Counts the bounce and emits the event.
    async fn dsn(&self, id: QueueId, idx: u16, failed: &RecipientResult) {
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
        let category = self.count_dsn(&msg, idx, failed).await;
        let e = event::dsn_event(&msg, rcpt, info.message_id, failed, category);
        self.inner.events.emit(e);
    }
}
