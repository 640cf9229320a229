//! Admin HTTP (SPEC "Admin HTTP"): `/healthz`, `/metrics`, and (later issues) `/api/...`
//! and `/dashboard`. axum on its own listener, loopback by default.

mod health;
mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::queue::Queue;

/// What the admin handlers read.
#[derive(Clone)]
pub struct State {
    pub config: Arc<Config>,
    pub queue: Queue,
    pub metrics: crate::metrics::Metrics,
}

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: State, shutdown: CancellationToken) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "admin HTTP server stopped");
    }
}
