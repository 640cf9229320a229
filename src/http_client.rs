//! The HTTP client mxgate talks to the ERP with: deliveries to `http` and `odoo` routes and
//! the events webhook. Shared infrastructure, like [`dns`](crate::dns) and
//! [`tls`](crate::tls), so the webhook does not reach into the delivery stage for it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Keeps connections to the ERP alive between requests.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

pub fn client() -> Client {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(10)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(conn)
}
