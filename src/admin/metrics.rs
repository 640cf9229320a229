//! `GET /metrics`: Prometheus text format. Queue gauges (per-state counts, backlog, bytes,
//! free disk) are refreshed from the queue's in-memory counters at scrape time, so they
//! are exact without a background task.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::queue::RcptState;

pub async fn metrics(State(state): State<super::State>) -> impl IntoResponse {
    let queue = state.queue.clone();
    let counts = tokio::task::spawn_blocking(move || queue.counts())
        .await
        .ok();
    if let Some(counts) = counts {
        for st in RcptState::ALL {
            let n = counts.get(&st).copied().unwrap_or(0);
            state.metrics.queue_gauge(st.as_str(), n);
        }
    }
    let u = state.queue.usage();
    state.metrics.storage(u.messages, u.bytes, u.disk_free);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
