//! `POST /api/reload`: read the config file again and put it in force (the same as
//! `SIGHUP` and `mxgate reload`; see [`crate::server::reload`]).
//!
//! `200` with the [`ReloadReport`] when it was applied
//! (`restart_needed` lists changed keys that wait for a restart); `422` with the report
//! when it was refused: `problems` holds every `file:line: key: message`, and `error` the
//! one-line summary (what `mxgate` prints for a failed API call).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;

/// What a reload did: the API's JSON answer, and what the CLI prints.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    /// `ok` (the new config is in force) or `error` (refused: nothing changed).
    pub result: &'static str,
    /// The file read, when the server was started from one.
    pub file: Option<String>,
    pub applied: bool,
    /// Changed keys that take effect only after a restart (their running value is kept).
    pub restart_needed: Vec<&'static str>,
    /// Why the reload was refused: `file:line: key: message`, every problem.
    pub problems: Vec<String>,
    /// One line saying what happened.
    pub message: String,
}

/// Runs a reload and answers its report: the server's reload, handed in by
/// [`server`](crate::server) when it builds the admin [`State`](super::State). A handle
/// rather than the server's `Reloader` itself because the server stands above admin (it
/// builds and spawns it): admin naming it would make the two import each other.
#[derive(Clone)]
pub struct Reload(Arc<dyn Fn() -> BoxFuture<'static, ReloadReport> + Send + Sync>);

impl Reload {
    pub fn new<F, Fut>(reload: F) -> Reload
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ReloadReport> + Send + 'static,
    {
        Reload(Arc::new(move || Box::pin(reload())))
    }

    pub async fn run(&self) -> ReloadReport {
        (self.0)().await
    }
}

/// `POST /api/reload`
pub async fn reload(State(s): State<super::State>) -> Response {
    let report = s.reload.run().await;
    let status = if report.applied {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    if !report.applied {
        body["error"] = serde_json::Value::String(report.message.clone());
    }
    (status, Json(body)).into_response()
}
