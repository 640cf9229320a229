//! `GET /healthz`: 200 `ok` while the server runs (a load balancer's liveness probe).

pub async fn healthz() -> &'static str {
    "ok\n"
}
