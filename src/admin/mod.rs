//! Admin HTTP (SPEC "Admin HTTP"): `/healthz`, `/metrics`, `/api/queue...`,
//! `/api/suppressions`, `/api/bounces/...`, `POST /api/reload` and `/dashboard`. axum on its own listener,
//! loopback by default; `/api` requires `Authorization: Bearer <admin.token>` when a token
//! is configured.

mod bounces;
mod dashboard;
mod health;
mod metrics;
mod queue;
mod queue_filter;
mod reload;
mod suppressions;
mod suspensions;
mod unsubscribe;

pub use reload::{Reload, ReloadReport};

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::live::View;
use crate::queue::Queue;

/// What the admin handlers read.
#[derive(Clone)]
pub struct State {
    /// The config in force (the bearer token is read per request: a reload changes it).
    pub config: View<Config>,
    pub queue: Queue,
    pub metrics: crate::metrics::Metrics,
    pub suppressions: crate::suppression::SuppressionList,
    pub stats: crate::stats::Stats,
    pub suspensions: crate::suspension::Suspensions,
    pub token_key: crate::routing::token::TokenKey,
    /// `POST /api/reload`.
    pub reload: Reload,
}

pub fn router(state: State) -> Router {
    let api = Router::new()
        .route("/api/queue", get(queue::list))
        .route("/api/queue/retry-failed", post(queue::retry_failed))
        .route("/api/queue/{id}", get(queue::show))
        .route("/api/queue/{id}/retry", post(queue::retry))
        .route("/api/queue/{id}/cancel", post(queue::cancel))
        .route("/api/queue/{id}/hold", post(queue::hold))
        .route("/api/queue/{id}/release", post(queue::release))
        .route("/api/queue/{id}/redeliver", post(queue::redeliver))
        .route("/api/queue/{id}/eml", get(queue::eml))
        .route(
            "/api/suppressions",
            get(suppressions::list)
                .post(suppressions::add)
                .delete(suppressions::remove),
        )
        .route("/api/suppressions/{address}", get(suppressions::show))
        .route(
            "/api/suspensions",
            get(suspensions::list).delete(suspensions::lift),
        )
        .route("/api/bounces/summary", get(bounces::summary))
        .route("/api/bounces/classification", get(bounces::classification))
        .route("/api/reload", post(reload::reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/dashboard", get(dashboard::page))
        .route("/queue", get(dashboard::queue_page))
        .route("/unsubscribe/{token}", post(unsubscribe::one_click))
        .merge(api)
        .with_state(state)
}

/// Bearer-token check for `/api`; constant-time comparison of the token bytes.
async fn require_token(
    axum::extract::State(s): axum::extract::State<State>,
    req: Request,
    next: Next,
) -> Response {
    let config = s.config.get();
    let expected = config.admin.token.expose();
    if expected.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
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
