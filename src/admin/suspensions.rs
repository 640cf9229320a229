//! `/api/suspensions` (issue 6 item 7): sending domains suspended for their bounce rate.
//!
//! - `GET /api/suspensions` → `{"suspensions": [{domain, reason, bounces, sends, created_ms}]}`.
//! - `DELETE /api/suspensions?domain=D` (or `{"domain": "D"}`) → `{"domain": D, "lifted": true}`,
//!   404 when D is not suspended.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LiftRequest {
    domain: Option<String>,
}

/// `GET /api/suspensions`
pub async fn list(State(s): State<super::State>) -> Response {
    Json(json!({ "suspensions": s.suspensions.list() })).into_response()
}

/// `DELETE /api/suspensions?domain=D`
pub async fn lift(
    State(s): State<super::State>,
    Query(q): Query<LiftRequest>,
    body: Bytes,
) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        q
    } else {
        match serde_json::from_slice::<LiftRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body is not a lift request: {e}"),
                );
            }
        }
    };
    let Some(domain) = req
        .domain
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, "\"domain\" is required".into());
    };
    let sus = s.suspensions.clone();
    let d = domain.clone();
    match tokio::task::spawn_blocking(move || sus.lift(&d)).await {
        Ok(Ok(true)) => {
            tracing::info!(domain, "suspension lifted via admin API");
            Json(json!({ "domain": domain, "lifted": true })).into_response()
        }
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, format!("{domain} is not suspended")),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot lift a suspension");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "suspension store unavailable".into(),
            )
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}
