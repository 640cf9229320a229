//! `POST /api/reload`: read the config file again and put it in force (the same as
//! `SIGHUP` and `mxgate reload`; see [`crate::server::reload`]).
//!
//! `200` with the [`ReloadReport`](crate::server::ReloadReport) when it was applied
//! (`restart_needed` lists changed keys that wait for a restart); `422` with the report
//! when it was refused: `problems` holds every `file:line: key: message`, and `error` the
//! one-line summary (what `mxgate` prints for a failed API call).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `POST /api/reload`
pub async fn reload(State(s): State<super::State>) -> Response {
    let report = s.reloader.reload().await;
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
