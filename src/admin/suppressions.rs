//! `/api/suppressions` (SPEC "Admin HTTP"): the suppression list an operator manages.
//!
//! - `GET /api/suppressions[?source=bounce|complaint|unsubscribe|manual][&after=ADDR][&limit=N]`
//!   → `{"suppressions": [{address, reason, source, created_ms, detail}], "total": N}`
//!   (address order; `after` pages).
//! - `GET /api/suppressions/{address}` → the entry, 404 when not listed.
//! - `POST /api/suppressions` with `{"address": "...", "reason": "...", "source": "manual"}`
//!   (or the same as query parameters) → 201 and the entry when new, 200 when it replaced one.
//! - `DELETE /api/suppressions?address=...` (or `{"address": "..."}`) → `{"removed": true}`,
//!   404 when the address was not listed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::suppression::{Added, Source, SuppressError, normalize_address};

#[derive(Deserialize)]
pub struct ListQuery {
    source: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Fields of POST and DELETE, from the JSON body or the query string.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    address: Option<String>,
    reason: Option<String>,
    source: Option<String>,
}

/// `GET /api/suppressions`
pub async fn list(State(s): State<super::State>, Query(q): Query<ListQuery>) -> Response {
    let source = match source_param(q.source.as_deref()) {
        Ok(src) => src,
        Err(resp) => return *resp,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let list = s.suppressions.clone();
    let found = tokio::task::spawn_blocking(move || {
        let total = list.len();
        list.list(source, q.after.as_deref(), limit)
            .map(|entries| (entries, total))
    })
    .await;
    match found {
        Ok(Ok((entries, total))) => {
            Json(json!({ "suppressions": entries, "total": total })).into_response()
        }
        Ok(Err(e)) => store_error(&e),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /api/suppressions/{address}`
pub async fn show(State(s): State<super::State>, Path(address): Path<String>) -> Response {
    let Some(a) = normalize_address(&address) else {
        return bad_request(format!("{address:?} is not an e-mail address"));
    };
    let list = s.suppressions.clone();
    match tokio::task::spawn_blocking(move || list.get(&a)).await {
        Ok(Ok(Some(entry))) => Json(entry).into_response(),
        Ok(Ok(None)) => not_listed(&address),
        Ok(Err(e)) => store_error(&e),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `POST /api/suppressions`
pub async fn add(
    State(s): State<super::State>,
    Query(q): Query<EntryRequest>,
    body: Bytes,
) -> Response {
    let (address, req) = match request(q, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let source = match source_param(req.source.as_deref()) {
        Ok(src) => src.unwrap_or(Source::Manual),
        Err(resp) => return *resp,
    };
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| source.as_str().to_owned());
    match s.suppressions.add(&address, &reason, source, None).await {
        Ok((added, entry)) => {
            let status = if added == Added::New {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            tracing::info!(rcpt = %entry.address, reason = %entry.reason, ?added, "suppression added via admin API");
            (status, Json(entry)).into_response()
        }
        Err(SuppressError::BadAddress(a)) => bad_request(format!("{a:?} is not an e-mail address")),
        Err(e) => store_error(&e),
    }
}

/// `DELETE /api/suppressions?address=...`
pub async fn remove(
    State(s): State<super::State>,
    Query(q): Query<EntryRequest>,
    body: Bytes,
) -> Response {
    let (address, _) = match request(q, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match s.suppressions.remove(&address).await {
        Ok(true) => {
            tracing::info!(rcpt = %address, "suppression removed via admin API");
            Json(json!({ "address": address.trim().to_lowercase(), "removed": true }))
                .into_response()
        }
        Ok(false) => not_listed(&address),
        Err(SuppressError::BadAddress(a)) => bad_request(format!("{a:?} is not an e-mail address")),
        Err(e) => store_error(&e),
    }
}

/// The JSON body when there is one, else the query parameters; the address is required.
fn request(q: EntryRequest, body: &[u8]) -> Result<(String, EntryRequest), Box<Response>> {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        q
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Box::new(bad_request(format!(
                "body is not a suppression request: {e}"
            )))
        })?
    };
    match req.address.clone().filter(|a| !a.trim().is_empty()) {
        Some(address) => Ok((address, req)),
        None => Err(Box::new(bad_request("\"address\" is required".into()))),
    }
}

/// A `source` parameter: absent or empty is `None`, an unknown name a 400.
fn source_param(v: Option<&str>) -> Result<Option<Source>, Box<Response>> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Source::parse(v).map(Some).ok_or_else(|| {
            Box::new(bad_request(format!(
                "unknown source {v:?}; one of bounce, complaint, unsubscribe, manual"
            )))
        }),
    }
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn not_listed(address: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("{} is not suppressed", address.trim()) })),
    )
        .into_response()
}

fn store_error(e: &SuppressError) -> Response {
    tracing::warn!(error = %e, "suppression store operation failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "suppression store unavailable" })),
    )
        .into_response()
}
