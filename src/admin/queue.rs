//! `/api/queue...` (SPEC "Admin HTTP"): list by state, show one message with each
//! recipient's state and last reply, retry, retry all failed, cancel, hold, release,
//! redeliver — what an operator does on the ERP's "Emails" queue screen.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::queue_filter::QueueFilter;
use crate::envelope::QueueId;
use crate::queue::{RcptState, StoreError};

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/queue[?state=deferred][&limit=100]`, and the console's filters
/// ([`QueueFilter`]: sender, recipient, domain, listener, from, to).
pub async fn list(
    State(s): State<super::State>,
    Query(q): Query<ListQuery>,
    Query(f): Query<QueueFilter>,
) -> Response {
    let filter = match f.parse() {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => match RcptState::parse(name) {
            Some(st) => Some(st),
            None => {
                return bad_request(format!(
                    "unknown state {name:?}; one of queued, deferred, sent, bounced, expired, cancelled, held"
                ));
            }
        },
    };
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let queue = s.queue.clone();
    let listed = move || {
        // Filtered after reading: the store indexes states, not senders or dates.
        let all = queue.list(state, 10_000);
        all.into_iter()
            .filter(|m| filter.matches(m))
            .take(limit)
            .collect::<Vec<_>>()
    };
    match tokio::task::spawn_blocking(listed).await {
        Ok(msgs) => Json(json!({ "messages": msgs })).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/queue/{id}`: the message, plus `auth`, the inbound authentication verdict
/// (`X-Mxgate-Auth` of the stored message; absent for submitted mail).
pub async fn show(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    let queue = s.queue.clone();
    let read = move || {
        let msg = queue.get(id)?;
        let auth = queue.body(id).and_then(|b| crate::auth::erp_header_of(&b));
        Some((msg, auth))
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Some((msg, auth))) => {
            let mut v = serde_json::to_value(msg).unwrap_or_default();
            v["auth"] = json!(auth);
            Json(v).into_response()
        }
        Ok(None) => not_found(id),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/queue/{id}/eml`: the stored message as delivered (`message/rfc822`).
pub async fn eml(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    let queue = s.queue.clone();
    match tokio::task::spawn_blocking(move || queue.body(id)).await {
        Ok(Some(body)) => (
            [
                (header::CONTENT_TYPE, "message/rfc822".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.eml\""),
                ),
            ],
            body,
        )
            .into_response(),
        Ok(None) => not_found(id),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `POST /api/queue/{id}/retry`
pub async fn retry(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    respond(s.queue.retry(id).await, "retried", id)
}

/// `POST /api/queue/{id}/cancel`
pub async fn cancel(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    respond(s.queue.cancel(id).await, "cancelled", id)
}

/// `POST /api/queue/{id}/hold` (`postsuper -h`)
pub async fn hold(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    respond(s.queue.hold(id).await, "held", id)
}

/// `POST /api/queue/{id}/release` (`postsuper -H`)
pub async fn release(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    respond(s.queue.release(id).await, "released", id)
}

/// `POST /api/queue/{id}/redeliver`: an inbound message's `sent` recipients again to the ERP.
pub async fn redeliver(State(s): State<super::State>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return bad_id(&id);
    };
    respond(s.queue.redeliver(id).await, "redelivered", id)
}

/// `POST /api/queue/retry-failed`
pub async fn retry_failed(State(s): State<super::State>) -> Response {
    match s.queue.retry_failed().await {
        Ok(n) => Json(json!({ "retried": n })).into_response(),
        Err(e) => store_error(&e),
    }
}

fn respond(r: Result<usize, StoreError>, what: &str, id: QueueId) -> Response {
    match r {
        Ok(n) => Json(json!({ "id": id.to_string(), what: n })).into_response(),
        Err(StoreError::NotFound(_)) => not_found(id),
        Err(e) => store_error(&e),
    }
}

fn parse_id(s: &str) -> Option<QueueId> {
    (s.len() <= 16).then(|| s.parse().ok()).flatten()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn bad_id(s: &str) -> Response {
    bad_request(format!("{s:?} is not a queue id (16 hex digits)"))
}

fn not_found(id: QueueId) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no message {id} in the queue") })),
    )
        .into_response()
}

fn store_error(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "admin queue operation failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "queue store unavailable" })),
    )
        .into_response()
}
