//! The delivery worker against real transports: an HTTP receiver on 127.0.0.1:0 standing in
//! for the ERP (down, failing, slow, refusing, fine), a Maildir in a temp dir, and the real
//! queue on RocksDB. Waits poll with a deadline; no fixed sleeps.

#[path = "common/metrics.rs"]
mod metrics;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use mxgate::clock::Clock;
use mxgate::config::Config;
use mxgate::delivery::Worker;
use mxgate::delivery::attempt::Context;
use mxgate::envelope::{Address, Destination, ListenerKind, QueueId, ReversePath};
use mxgate::live::View;
use mxgate::metrics::{DELIVERY_ATTEMPTS, Metrics};
use mxgate::queue::{NewMessage, Queue, QueuedMessage, RcptState, Recipient};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

// ---- the ERP ----------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Push {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Erp {
    addr: Arc<Mutex<Option<SocketAddr>>>,
    pushes: Arc<Mutex<Vec<Push>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    started: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

impl Erp {
    async fn start() -> Erp {
        let erp = Erp::reserve();
        erp.up().await;
        erp
    }

    /// A free port with nothing listening on it yet: connections are refused.
    fn reserve() -> Erp {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let erp = Erp::default();
        *erp.addr.lock().expect("lock") = Some(l.local_addr().expect("addr"));
        erp.status.store(200, Ordering::SeqCst);
        erp
    }

    async fn up(&self) {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(self.addr()).expect("bind the reserved port");
        let listener: TcpListener = sock.listen(64).expect("listen");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    fn addr(&self) -> SocketAddr {
        self.addr.lock().expect("lock").expect("reserved")
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    fn pushes(&self) -> Vec<Push> {
        self.pushes.lock().expect("lock").clone()
    }
}

async fn receive(
    State(erp): State<Erp>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    erp.started.fetch_add(1, Ordering::SeqCst);
    let now = erp.active.fetch_add(1, Ordering::SeqCst) + 1;
    erp.max_active.fetch_max(now, Ordering::SeqCst);
    // A slow ERP (the server side of the test, not the test waiting for work).
    tokio::time::sleep(Duration::from_millis(erp.delay_ms.load(Ordering::SeqCst))).await;
    erp.active.fetch_sub(1, Ordering::SeqCst);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    erp.pushes.lock().expect("lock").push(Push {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    let status = StatusCode::from_u16(erp.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    (status, "no such alias")
}

// ---- mxgate side: queue + worker ---------------------------------------------------------

struct Mx {
    dir: TempDir,
    queue: Queue,
    clock: Clock,
    metrics: Metrics,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

fn config(dir: &Path, erp_url: &str, concurrency: usize) -> Config {
    let d = dir.display();
    let toml = format!(
        r#"
[server]
hostname = "mx.example.test"
data_dir = "{d}/data"
shutdown_timeout = "4s"
[queue]
retry_initial = "100ms"
retry_max = "300ms"
expire_after = "1h"
concurrency = {concurrency}
[routes.crm]
kind = "http"
url = "{erp_url}/mxgate/inbound"
timeout = "2s"
token = "s3cret"
[routes.slow]
kind = "http"
url = "{erp_url}/slow"
timeout = "200ms"
[routes.files]
kind = "maildir"
path = "{d}/maildir"
[routes.void]
kind = "discard"
[routes.odoo]
kind = "odoo"
url = "{erp_url}"
database = "prod"
uid = 2
password = "x"
"#
    );
    Config::from_toml(&toml, Path::new("delivery-test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

impl Mx {
    async fn start(erp: &Erp) -> Mx {
        Mx::start_with(
            tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir"),
            erp,
            4,
            Clock::system(),
        )
    }

    fn start_with(dir: TempDir, erp: &Erp, concurrency: usize, clock: Clock) -> Mx {
        let config = config(dir.path(), &erp.url(), concurrency);
        let metrics = Metrics::new();
        let queue = Queue::open(
            &dir.path().join("data/queue"),
            config.queue.clone(),
            clock.clone(),
            metrics.clone(),
        )
        .expect("open queue");
        let stop = CancellationToken::new();
        let w = Worker::new(
            queue.clone(),
            View::fixed(Context::new(
                Arc::new(config.clone()),
                None,
                None,
                None,
                None,
            )),
            metrics.clone(),
            clock.clone(),
        );
        let worker = tokio::spawn(w.run(stop.clone()));
        Mx {
            dir,
            queue,
            clock,
            metrics,
            stop,
            worker,
        }
    }

    /// Graceful stop; returns the data dir for a restart.
    async fn stop(self) -> (TempDir, Clock) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.worker)
            .await
            .expect("worker drains before its deadline")
            .expect("worker task");
        self.queue.close();
        (self.dir, self.clock)
    }

    async fn send(&self, to: &str, dest: Destination, body: &str) -> QueueId {
        let msg = NewMessage {
            listener: ListenerKind::Inbound,
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "client.test".into(),
            mail_from: ReversePath::Address(Address::parse("alice@client.test").expect("addr")),
            recipients: vec![(Address::parse(to).expect("addr"), dest)],
            body: body.as_bytes().to_vec(),
        };
        self.queue.enqueue(msg).await.expect("enqueue")
    }

    fn rcpt(&self, id: QueueId) -> Recipient {
        self.queue.get(id).expect("message").recipients[0].clone()
    }

    /// Waits until the recipient satisfies `done`.
    async fn until(&self, id: QueueId, what: &str, done: impl Fn(&Recipient) -> bool) -> Recipient {
        eventually(10, what, || {
            self.queue
                .get(id)
                .map(|m: QueuedMessage| m.recipients[0].clone())
                .filter(&done)
        })
        .await
    }
}

async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn to(route: &str, alias: &str) -> Destination {
    Destination::Route {
        route: route.into(),
        alias: alias.into(),
        thread: None,
        detail: None,
    }
}

const MSG: &str = "From: alice@client.test\r\nSubject: hello\r\n\r\nbody\r\n";

// ---- tests -----------------------------------------------------------------------------

#[tokio::test]
async fn http_route_posts_the_raw_message_with_every_metadata_header() {
    let erp = Erp::start().await;
    let mx = Mx::start(&erp).await;
    let dest = Destination::Route {
        route: "crm".into(),
        alias: "sales@example.test".into(),
        thread: Some("T0k3n".into()),
        detail: Some("q3".into()),
    };
    let id = mx.send("sales+q3@example.test", dest, MSG).await;
    let r = mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    assert_eq!(
        (r.attempts, r.last_reply.as_deref()),
        (1, Some("HTTP 200 OK"))
    );
    let pushes = erp.pushes();
    assert_eq!(pushes.len(), 1);
    let p = &pushes[0];
    assert_eq!(p.path, "/mxgate/inbound");
    assert_eq!(p.body, MSG.as_bytes());
    let h = |k: &str| p.headers.get(k).map(String::as_str);
    assert_eq!(h("content-type"), Some("message/rfc822"));
    assert_eq!(h("x-mxgate-alias"), Some("sales@example.test"));
    assert_eq!(h("x-mxgate-route"), Some("crm"));
    assert_eq!(h("x-mxgate-thread"), Some("T0k3n"));
    assert_eq!(h("x-mxgate-detail"), Some("q3"));
    assert_eq!(h("x-mxgate-envelope-from"), Some("alice@client.test"));
    assert_eq!(h("x-mxgate-envelope-to"), Some("sales+q3@example.test"));
    assert_eq!(h("x-mxgate-queue-id"), Some(id.to_string().as_str()));
    assert_eq!(h("authorization"), Some("Bearer s3cret"));
    let text = mx.metrics.render();
    assert_eq!(
        metrics::sample(
            &text,
            DELIVERY_ATTEMPTS,
            &[("result", "sent"), ("provider", "http")]
        ),
        Some(1.0),
        "{text}"
    );
    mx.stop().await;
}

#[tokio::test]
async fn erp_refusing_connections_at_first_gets_the_message_once_it_is_up() {
    let erp = Erp::reserve();
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    let r = mx.until(id, "a refused attempt", |r| r.attempts >= 1).await;
    assert_eq!(r.state, RcptState::Deferred);
    assert!(
        r.last_reply.as_deref().unwrap_or("").contains("refused"),
        "{r:?}"
    );
    erp.up().await;
    let r = mx
        .until(id, "sent after the ERP came up", |r| {
            r.state == RcptState::Sent
        })
        .await;
    assert!(r.attempts > 1, "attempts = {}", r.attempts);
    assert_eq!(erp.pushes().len(), 1);
    mx.stop().await;
}

#[tokio::test]
async fn erp_answering_503_at_first_gets_the_message_on_a_retry() {
    let erp = Erp::start().await;
    erp.status.store(503, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    let r = mx.until(id, "a 503", |r| r.attempts >= 2).await;
    assert_eq!(r.state, RcptState::Deferred);
    assert!(
        r.last_reply
            .as_deref()
            .unwrap_or("")
            .starts_with("HTTP 503"),
        "{r:?}"
    );
    erp.status.store(200, Ordering::SeqCst);
    let r = mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    assert!(r.attempts >= 3);
    mx.stop().await;
}

#[tokio::test]
async fn erp_404_bounces_with_the_status_line_and_is_not_retried() {
    let erp = Erp::start().await;
    erp.status.store(404, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    let r = mx
        .until(id, "bounced", |r| r.state == RcptState::Bounced)
        .await;
    assert_eq!(r.attempts, 1);
    assert_eq!(
        r.last_reply.as_deref(),
        Some("HTTP 404 Not Found: no such alias")
    );
    // The state is readable once written; the counts follow once the group's fsync is done.
    eventually(10, "bounced counted", || {
        (mx.queue.counts().get(&RcptState::Bounced) == Some(&1)).then_some(())
    })
    .await;
    assert_eq!(mx.queue.counts().get(&RcptState::Bounced), Some(&1));
    mx.stop().await;
}

#[tokio::test]
async fn erp_slower_than_the_route_timeout_is_deferred() {
    let erp = Erp::start().await;
    erp.delay_ms.store(1_000, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("slow", "sales@example.test"), MSG)
        .await;
    let r = mx
        .until(id, "a timed-out attempt", |r| r.attempts >= 1)
        .await;
    assert_eq!(r.state, RcptState::Deferred);
    assert!(
        r.last_reply.as_deref().unwrap_or("").contains("timed out"),
        "{r:?}"
    );
    mx.stop().await;
}

#[tokio::test]
async fn maildir_route_writes_the_exact_bytes_into_new() {
    let erp = Erp::start().await;
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("files@example.test", to("files", "files@example.test"), MSG)
        .await;
    let r = mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    assert!(
        r.last_reply
            .as_deref()
            .unwrap_or("")
            .starts_with("maildir new/"),
        "{r:?}"
    );
    let new = mx.dir.path().join("maildir/new");
    let files: Vec<_> = std::fs::read_dir(&new)
        .expect("new/")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::read(files[0].path()).expect("read"),
        MSG.as_bytes()
    );
    assert_eq!(
        std::fs::read_dir(mx.dir.path().join("maildir/tmp"))
            .expect("tmp/")
            .count(),
        0
    );
    mx.stop().await;
}

#[tokio::test]
async fn discard_route_is_sent_without_delivering_anything() {
    let erp = Erp::start().await;
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("null@example.test", to("void", "null@example.test"), MSG)
        .await;
    let r = mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    assert_eq!(r.last_reply.as_deref(), Some("discarded"));
    assert!(erp.pushes().is_empty());
    mx.stop().await;
}

#[tokio::test]
async fn odoo_route_at_a_server_that_is_not_odoo_waits_in_the_queue_with_a_clear_reason() {
    // The full XML-RPC exchange is tested against a real XML-RPC server in tests/odoo.rs.
    let erp = Erp::start().await;
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("crm@example.test", to("odoo", "crm@example.test"), MSG)
        .await;
    let r = mx.until(id, "deferred", |r| r.attempts >= 1).await;
    assert_eq!(r.state, RcptState::Deferred);
    assert!(
        r.last_reply
            .as_deref()
            .unwrap_or("")
            .contains("not an XML-RPC answer"),
        "{r:?}"
    );
    mx.stop().await;
}

#[tokio::test]
async fn recipient_still_failing_after_expire_after_expires() {
    let erp = Erp::reserve();
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    mx.until(id, "a failed attempt", |r| r.attempts >= 1).await;
    mx.clock.advance(Duration::from_secs(2 * 3600));
    let r = mx
        .until(id, "expired", |r| r.state == RcptState::Expired)
        .await;
    assert!(r.last_reply.is_some());
    assert!(
        mx.queue
            .due(mx.clock.now_ms(), &Default::default(), 10)
            .expect("due")
            .ready
            .is_empty()
    );
    mx.stop().await;
}

#[tokio::test]
async fn restart_with_a_pending_recipient_resumes_and_delivers() {
    let erp = Erp::start().await;
    erp.status.store(503, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    mx.until(id, "a 503", |r| r.attempts >= 1).await;
    let (dir, clock) = mx.stop().await;
    erp.status.store(200, Ordering::SeqCst);
    let mx = Mx::start_with(dir, &erp, 4, clock);
    assert!(mx.rcpt(id).state.is_pending());
    let r = mx
        .until(id, "sent after restart", |r| r.state == RcptState::Sent)
        .await;
    assert!(r.attempts >= 2);
    assert_eq!(
        erp.pushes().last().map(|p| p.body.clone()),
        Some(MSG.as_bytes().to_vec())
    );
    mx.stop().await;
}

#[tokio::test]
async fn a_recipient_in_flight_is_never_dispatched_twice() {
    let erp = Erp::start().await;
    erp.delay_ms.store(400, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    eventually(10, "the ERP busy with it", || {
        (erp.started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Each enqueue wakes the scheduler and makes it scan the index while `id` is in flight.
    for _ in 0..5 {
        mx.send("null@example.test", to("void", "null@example.test"), MSG)
            .await;
    }
    mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    assert_eq!(erp.started.load(Ordering::SeqCst), 1);
    mx.stop().await;
}

#[tokio::test]
async fn no_more_than_the_configured_concurrency_is_in_flight() {
    let erp = Erp::start().await;
    erp.delay_ms.store(150, Ordering::SeqCst);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mx = Mx::start_with(dir, &erp, 2, Clock::system());
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            mx.send("sales@example.test", to("crm", "sales@example.test"), MSG)
                .await,
        );
    }
    for id in ids {
        mx.until(id, "sent", |r| r.state == RcptState::Sent).await;
    }
    assert_eq!(erp.pushes().len(), 6);
    assert!(
        erp.max_active.load(Ordering::SeqCst) <= 2,
        "max in flight {}",
        erp.max_active.load(Ordering::SeqCst)
    );
    mx.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_attempt_in_flight_finish_and_record() {
    let erp = Erp::start().await;
    erp.delay_ms.store(300, Ordering::SeqCst);
    let mx = Mx::start(&erp).await;
    let id = mx
        .send("sales@example.test", to("crm", "sales@example.test"), MSG)
        .await;
    eventually(10, "the ERP busy with it", || {
        (erp.started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let queue = mx.queue.clone();
    mx.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), mx.worker)
        .await
        .expect("worker drains")
        .expect("worker task");
    let r = queue.get(id).expect("message").recipients[0].clone();
    assert_eq!(
        r.state,
        RcptState::Sent,
        "recorded before the worker returned"
    );
    queue.close();
}
