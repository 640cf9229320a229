//! Stage ⑤ — delivery: due recipients from the [`queue`](crate::queue) in, an [`Outcome`](crate::queue::Outcome)
//! per attempt recorded back into it.
//!
//! - [`worker`]: the scheduler — reads the queue's `d/` index in due order, runs up to
//!   `queue.concurrency` attempts at once, never the same recipient twice concurrently.
//! - [`attempt`]: one recipient, one attempt: its destination is matched once and picks
//!   the lane; both lanes end in the same record-and-report step.
//! - The local lane, [`local`]: inbound auto-replies tagged or dropped per domain
//!   ([`auto_reply`]), then the route kind picks the transport — [`http`] (POST to the
//!   ERP), [`odoo`] (XML-RPC `message_process`), [`maildir`], `discard`, `reject`, and
//!   [`forward`] (queues an SRS copy, [`crate::routing::srs`], whose recipients are then
//!   relayed).
//! - The relay lane, [`relayed`]: [`plan`] (smart hosts by priority and `from_filter`, or
//!   MX; the recipient's provider), [`warming`] admit and settle, [`relay`] over [`smtp`]
//!   (mail-send sessions, pooled; [`oauth2`] tokens for `xoauth2` smart hosts), [`dsn`]
//!   back to the sender on failure.
//! - [`warming`]: daily caps by day in warming, provider hourly [`rate`]s (governor),
//!   [`throttle`] on rate-limit replies; over a cap the recipient is held (`deferred`, no
//!   attempt counted) until its window opens.
//! - Direct-MX TLS: [`mta_sts`] (RFC 8461 policies: which MX hosts, verified or not) puts
//!   a [`tls_policy`] on each MX hop, checked after STARTTLS; [`tls_rpt`] counts each
//!   session's result and [`tls_report`] sends the daily RFC 8460 reports.
//! - [`outcome`]: [`outcome::classify`], the only error → [`Outcome`](crate::queue::Outcome) mapping.
//!
//! Delivery is at-least-once: an attempt's `d/` key stays until its outcome is recorded, so
//! a crash mid-attempt repeats it after restart (the ERP gets `X-Mxgate-Queue-Id` to
//! de-duplicate).

pub mod attempt;
pub mod auto_reply;
pub mod dane;
pub mod dsn;
pub mod forward;
pub mod http;
pub mod local;
pub mod maildir;
pub mod mta_sts;
pub mod oauth2;
pub mod odoo;
pub mod odoo_aliases;
pub mod outcome;
pub mod plan;
pub mod pools;
pub mod rate;
pub mod relay;
pub mod relayed;
pub mod smtp;
pub mod throttle;
pub mod tls_client;
pub mod tls_policy;
pub mod tls_report;
pub mod tls_rpt;
pub mod warming;
pub mod worker;

pub use worker::Worker;

use std::time::Duration;

/// Why an attempt failed; [`outcome::classify`] turns it into an [`Outcome`](crate::queue::Outcome).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("HTTP request failed: {}", crate::error_chain::chain(.0))]
    Http(#[source] hyper_util::client::legacy::Error),
    #[error("timed out: no answer within {0:?}")]
    Timeout(Duration),
    /// A non-2xx answer; `reply` is the status line plus an excerpt of the body.
    #[error("{reply}")]
    Status { status: u16, reply: String },
    #[error("route URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("route {0:?} is not in the configuration")]
    UnknownRoute(String),
    #[error("{0} routes are not available yet: the message waits in the queue until they are")]
    NotAvailable(&'static str),
    /// A `reject` route met at delivery (the config changed while the message waited).
    #[error("{0}")]
    Rejected(String),
    #[error("maildir: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue: {0}")]
    Store(#[from] crate::queue::StoreError),
    /// A 5xx to MAIL, RCPT or DATA from a smart host or MX: the remote refuses.
    #[error("{0}")]
    SmtpRejected(String),
    /// The recipient domain takes no mail (null MX, no MX and no address).
    #[error("{0}")]
    Unroutable(String),
    /// Every hop failed temporarily, DNS did not answer, or no route is configured.
    #[error("{0}")]
    RelayLater(String),
    /// Relaying is not wired (a worker started without [`relay::Relay`], or a `forward`
    /// route without its [`forward::Forwarder`]).
    #[error("outbound relay is not configured in this process")]
    NoRelay,
    #[error("the forwarded copy could not be queued")]
    ForwardQueue,
    /// An XML-RPC fault or unreadable answer from an `odoo` route (Odoo's words).
    #[error("{0}")]
    Fault(String),
}
