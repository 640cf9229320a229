//! Stage ① — SMTP in. (Being written: see the session helper.)

pub mod body;
pub mod command;
pub mod listener;
pub mod reply;

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::routing::Router;

/// What every session of one server shares. Built once in `server.rs`.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub router: Arc<Router>,
    pub queue: Queue,
    pub metrics: Metrics,
    /// STARTTLS / implicit TLS; `None` only in tests that run without a certificate.
    pub tls: Option<TlsAcceptor>,
    /// Cancelled on SIGTERM: listeners stop accepting, sessions answer 421 at the next command.
    pub shutdown: CancellationToken,
}
