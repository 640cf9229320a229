//! Stage ⑤ — delivery: due recipients from the [`queue`](crate::queue) in, an [`Outcome`]
//! per attempt recorded back into it.
//!
//! - [`worker`]: the scheduler — reads the queue's `d/` index in due order, runs up to
//!   `queue.concurrency` attempts at once, never the same recipient twice concurrently.
//! - [`attempt`]: one recipient, one attempt: the route kind decides the transport
//!   (the only `match` on route kinds in delivery).
//! - [`http`] (POST to the ERP), [`maildir`]; `discard` is sent at once; `odoo` and
//!   `forward` arrive with the relay issue and defer meanwhile.
//! - [`outcome`]: `Outcome` and [`outcome::classify`], the only error → outcome mapping.
//!
//! Delivery is at-least-once: an attempt's `d/` key stays until its outcome is recorded, so
//! a crash mid-attempt repeats it after restart (the ERP gets `X-Mxgate-Queue-Id` to
//! de-duplicate).

pub mod attempt;
pub mod http;
pub mod maildir;
pub mod outcome;
pub mod worker;

pub use outcome::Outcome;
pub use worker::Worker;

use std::time::Duration;

/// Why an attempt failed; [`outcome::classify`] turns it into an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("HTTP request failed: {}", chain(.0))]
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
}

/// `client error (Connect): tcp connect error: Connection refused` — hyper's top-level
/// message alone says too little for an operator reading `last_reply`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
