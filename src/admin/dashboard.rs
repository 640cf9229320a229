//! `GET /dashboard`: the Bounce Classification page — one self-contained HTML file
//! (`dashboard.html`, inline CSS and plain JavaScript, no CDN: the machines are offline)
//! that reads `/api/bounces/summary` and `/api/bounces/classification`. When the API wants
//! a bearer token the page asks for it and keeps it in the browser's session storage.
//!
//! The page itself carries no data, so it is served without the token. `GET /queue`, the
//! queue console, is made the same way.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");
const QUEUE_PAGE: &str = include_str!("queue.html");

pub async fn page() -> impl IntoResponse {
    html(PAGE)
}

/// `GET /queue`: the queue console (`queue.html`), built the same way: filters, message
/// detail, retry / cancel / hold / release / redeliver, `.eml` download, all through
/// `/api/queue...` with the same token handling.
pub async fn queue_page() -> impl IntoResponse {
    html(QUEUE_PAGE)
}

fn html(page: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
}
