//! What both delivery lanes share: the attempt [`Context`] built from one config, the
//! [`Attempt`] under way, and its end, [`Attempt::finish`] — metrics, log, the queue's
//! record (with the DSN the new state owes, built in the same commit), then the one
//! [`Record`] of it handed to [`report`].
//! Every failure is an [`Outcome`]; nothing here returns an error.
//!
//! The [`worker`](super::worker) matches the recipient's destination once and hands the
//! attempt to the [`local`](super::local) or the [`relayed`](super::relayed) lane.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::forward::Forwarder;
use super::relay::Relay;
use super::warming::Warming;
use super::{http, odoo};
use crate::config::Config;
use crate::db::Write;
use crate::envelope::QueueId;
use crate::metrics::Metrics;
use crate::queue::{
    Due, NewMessage, Outcome, Queue, QueuedMessage, RcptState, Recipient, StoreError,
};
use crate::report::{self, MessageInfo, Observer, Record};

/// Pause after the queue failed to record an outcome, so a broken store is not hammered.
const STORE_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What an attempt needs, all built from one config: the server builds one per config (at
/// start and on every reload) and each attempt takes the current one for its whole run.
pub struct Context {
    pub config: Arc<Config>,
    pub http: http::Clients,
    /// uids of `odoo` routes configured with a login.
    pub odoo: odoo::Logins,
    /// The `forward` route; `None` = its mail is deferred (a process without a relay).
    pub forward: Option<Forwarder>,
    /// The relay lane (relayed recipients, returned bounces, DSNs); `None` = defer them.
    pub relay: Option<Arc<Relay>>,
    /// Warming tiers and provider rates of relayed mail; `None` = `[warming]` is off.
    pub warming: Option<Warming>,
    /// Metrics, statistics and ERP events of each recorded outcome; `None` = metrics only.
    pub observer: Option<Observer>,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        forward: Option<Forwarder>,
        relay: Option<Arc<Relay>>,
        warming: Option<Warming>,
        observer: Option<Observer>,
    ) -> Context {
        Context {
            http: http::Clients::new(&config),
            config,
            odoo: odoo::Logins::default(),
            forward,
            relay,
            warming,
            observer,
        }
    }
}

/// The attempt under way, as both lanes see it.
pub(super) struct Attempt<'a> {
    pub ctx: &'a Context,
    pub queue: &'a Queue,
    pub metrics: &'a Metrics,
    pub msg: &'a QueuedMessage,
    /// The recipient as loaded before this attempt.
    pub rcpt: &'a Recipient,
    pub due: Due,
    /// What the observer reads from the message's header (default without observer).
    pub info: MessageInfo,
    pub start: Instant,
}

/// Outcome of an attempt whose stored message has no body: a damaged store. Deferred, so
/// it is visible and expires.
pub(super) fn body_missing() -> Outcome {
    Outcome::deferred("queue: message body is missing")
}

impl Attempt<'_> {
    /// Records `outcome` (from `sending_ip`, when it left over SMTP) with the message
    /// `follow` makes from the recorded state (the DSN owed, if any), then reports it.
    /// `kind`: the `provider` label of `mxgate_delivery_attempts_total`.
    pub async fn finish(
        &self,
        outcome: Outcome,
        kind: &'static str,
        sending_ip: Option<IpAddr>,
        follow: impl FnOnce(&QueuedMessage, RcptState) -> Option<NewMessage> + Send + 'static,
    ) {
        let elapsed = self.start.elapsed().as_secs_f64();
        self.metrics
            .delivery_attempt(outcome.as_label(), kind, elapsed);
        log(&outcome, &self.rcpt.address, kind);
        let (id, rcpt) = (self.due.id, self.due.rcpt);
        let stats = self.stats_writes(&outcome, sending_ip);
        let recorded = (self.queue)
            .record_then_writing(id, rcpt, &outcome, follow, stats)
            .await;
        if let Some(state) = recorded_state(self.msg, recorded).await
            && let Some(o) = &self.ctx.observer
        {
            let a = report::Attempt::recorded(
                self.msg, self.rcpt, &self.info, &outcome, state, sending_ip,
            );
            o.report(Record::Attempt(a)).await;
        }
    }
}

impl Attempt<'_> {
    /// What the queue writes to the statistics with the recipient's new state: the
    /// [`Record`] the observer will get, counted by it
    /// ([`Observer::stats_writes`]), so the count and the state share one fsync.
    fn stats_writes(
        &self,
        outcome: &Outcome,
        sending_ip: Option<IpAddr>,
    ) -> impl FnOnce(&QueuedMessage, RcptState) -> Vec<Write> + Send + 'static {
        let observer = self.ctx.observer.clone();
        let (before, info, outcome) = (self.rcpt.clone(), self.info.clone(), outcome.clone());
        move |msg, state| {
            observer.map_or_else(Vec::new, |o| {
                let a = report::Attempt::recorded(msg, &before, &info, &outcome, state, sending_ip);
                o.stats_writes(&a)
            })
        }
    }

    /// As [`Attempt::stats_writes`] for a held recipient, whose only counted state is an
    /// expiry ([`report::Attempt::held_expired`]).
    pub(super) fn held_stats_writes(
        &self,
        reason: &str,
    ) -> impl FnOnce(&QueuedMessage, RcptState) -> Vec<Write> + Send + 'static {
        let observer = self.ctx.observer.clone();
        let (before, info, reason) = (self.rcpt.clone(), self.info.clone(), reason.to_owned());
        move |msg, state| match observer.filter(|_| state == RcptState::Expired) {
            Some(o) => o.stats_writes(&report::Attempt::held_expired(msg, &before, &info, &reason)),
            None => Vec::new(),
        }
    }
}

/// The recipient's new state once the queue recorded it (and the DSN it owes, logged);
/// store failures are logged (the `d/` entry stays, so the recipient comes round again).
pub(super) async fn recorded_state(
    msg: &QueuedMessage,
    recorded: Result<Option<(RcptState, Option<QueueId>)>, StoreError>,
) -> Option<RcptState> {
    match recorded {
        Ok(Some((state, dsn))) => {
            if let Some(dsn) = dsn {
                tracing::info!(queue_id = %msg.id, %dsn, to = %msg.mail_from, "DSN queued");
            }
            Some(state)
        }
        Ok(None) | Err(StoreError::Closed) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a delivery outcome; the attempt will be repeated");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
            None
        }
    }
}

fn log(outcome: &Outcome, rcpt: &str, kind: &str) {
    match outcome {
        Outcome::Sent { reply } => tracing::info!(rcpt, route_kind = kind, reply, "delivered"),
        Outcome::Deferred { reason, .. } => {
            tracing::info!(rcpt, route_kind = kind, reason, "deferred")
        }
        Outcome::Bounced { reply, .. } => tracing::info!(rcpt, route_kind = kind, reply, "bounced"),
    }
}
