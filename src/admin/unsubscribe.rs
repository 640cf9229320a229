//! `POST /unsubscribe/{token}` (RFC 8058 one-click unsubscribe; issue 6 item 6): the URL
//! mxgate puts in `List-Unsubscribe` of mass mail. Outside `/api` (no bearer token: the
//! mailbox provider POSTs it on the recipient's behalf); the HMAC token is the credential.
//! The address it names goes on the suppression list (source `unsubscribe`).
//!
//! - 200 `{"address": ..., "unsubscribed": true}` — also when it was listed already
//!   (RFC 8058 §3.2: repeating the POST is harmless);
//! - 404 for a token that is not ours (no hint which part was wrong);
//! - 503 when the suppression store fails (the provider may retry).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::suppression::Source;

/// `POST /unsubscribe/{token}`; the body (`List-Unsubscribe=One-Click`) is not needed.
pub async fn one_click(State(s): State<super::State>, Path(token): Path<String>) -> Response {
    let Some(address) = s.token_key.verify_unsubscribe(&token) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown unsubscribe link" })),
        )
            .into_response();
    };
    let added = s
        .suppressions
        .add(
            &address,
            "unsubscribe",
            Source::Unsubscribe,
            Some("one-click (RFC 8058)"),
        )
        .await;
    match added {
        Ok((how, _)) => {
            tracing::info!(rcpt = %address, ?how, "one-click unsubscribe");
            Json(json!({ "address": address, "unsubscribed": true })).into_response()
        }
        Err(e) => {
            tracing::warn!(rcpt = %address, error = %e, "cannot record an unsubscribe");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "suppression store unavailable" })),
            )
                .into_response()
        }
    }
}
