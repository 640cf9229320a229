//! Two nodes sharing one Redis (issue 18): two real servers with their own data dirs and a
//! real `redis-server` started by the test. A bounce on A suppresses on B, a token from A
//! is good on B, a daily cap of 10 lets 10 out across both, and with Redis killed both go
//! on under `cap / cluster.nodes`, then converge once Redis is back. Suspensions and bounce
//! windows: [`suspension`].

mod common;
#[path = "cluster/round_trips.rs"]
mod round_trips;
#[path = "cluster/suspension.rs"]
mod suspension;

use common::messages::{dsn, plain};
use common::redis::Redis;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::{Erp, Listener, SmtpClient, TestServer, eventually, submit};
use mxgate::config::HumanDuration;
use mxgate::metrics::{CLUSTER_REDIS_UP, CLUSTER_REPLAYED};
use mxgate::queue::RcptState;

const SENDER: &str = "news@example.test";

/// `[cluster]` on `redis` as node `name`, plus `more`.
fn cluster_toml(redis: &Redis, name: &str, more: &str) -> String {
    format!(
        "{}\n[cluster]\nredis_url = \"{}\"\nnode_name = \"{name}\"\nnodes = 2\n{more}",
        submit::user_toml(&["example.test"]),
        redis.url()
    )
}

/// A node whose ERP also receives its events (`[events]`).
async fn node(redis: &Redis, name: &str, more: &str) -> TestServer {
    let erp = Erp::start().await;
    let events = format!(
        "[events]\nurl = \"{}/events\"\nretry_max = \"1s\"\n",
        erp.url()
    );
    let toml = cluster_toml(redis, name, &format!("{more}{events}"));
    TestServer::start_configured(erp, &toml, |c| {
        c.queue.expire_after = HumanDuration::secs(86_400);
    })
    .await
}

/// Waits for an event of `kind` (the `event` field) at `srv`'s ERP.
async fn wait_event(srv: &TestServer, kind: &str) -> serde_json::Value {
    eventually(15, &format!("{kind} event"), || async {
        srv.erp
            .pushes()
            .iter()
            .filter(|p| p.path == "/events")
            .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.body).ok())
            .find(|v| v["event"] == kind)
    })
    .await
}

async fn wait_up(srv: &TestServer, up: f64) {
    eventually(15, &format!("{CLUSTER_REDIS_UP} = {up}"), || async {
        (srv.metric(CLUSTER_REDIS_UP, &[]).await == Some(up)).then_some(())
    })
    .await;
}

/// An authenticated submission session with MAIL FROM given.
async fn submission(srv: &TestServer) -> SmtpClient {
    let mut c = srv.smtp(Listener::Submissions).await;
    c.cmd("EHLO erp.test").await.expect_code(250);
    c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "s3cret")))
        .await
        .expect_code(235);
    c.cmd("MAIL FROM:<odoo@example.test>")
        .await
        .expect_code(250);
    c
}

/// Waits until submission on `srv` refuses `rcpt` as suppressed.
async fn wait_refused(srv: &TestServer, rcpt: &str) {
    let list = srv.running().suppressions.clone();
    eventually(15, &format!("{rcpt} suppressed on this node"), || {
        let list = list.clone();
        async move { list.is_suppressed(rcpt).then_some(()) }
    })
    .await;
    let mut c = submission(srv).await;
    c.cmd(&format!("RCPT TO:<{rcpt}>"))
        .await
        .expect(550, "5.7.1 Recipient suppressed");
}

#[tokio::test]
async fn a_bounce_on_node_a_suppresses_the_address_on_node_b() {
    let redis = Redis::start().await;
    let a = node(&redis, "a", "").await;
    let b = node(&redis, "b", "").await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;

    let mut c = submission(&a).await;
    c.cmd("RCPT TO:<gone@remote.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data("From: odoo@example.test\r\nTo: gone@remote.test\r\nSubject: x\r\n\r\nx\r\n")
        .await
        .expect_code(250);
    let q = a.running().queue.clone();
    let id = eventually(10, "message queued on A", || {
        let q = q.clone();
        async move { q.list(None, 10).first().map(|m| m.id) }
    })
    .await;
    let token = a.running().token_key.issue(id, 0);
    let mut r = a.smtp(Listener::Inbound).await;
    r.cmd("EHLO mx.remote.test").await.expect_code(250);
    r.cmd("MAIL FROM:<>").await.expect_code(250);
    r.cmd(&format!("RCPT TO:<bounce+{token}@example.test>"))
        .await
        .expect_code(250);
    r.cmd("DATA").await.expect_code(354);
    let report = dsn(
        "mx.remote.test",
        "gone@remote.test",
        "5.1.1",
        "550 5.1.1 User unknown",
    );
    r.send_data(&report).await.expect_code(250);

    wait_refused(&a, "gone@remote.test").await;
    wait_refused(&b, "gone@remote.test").await;
    let entry = b
        .running()
        .suppressions
        .get("gone@remote.test")
        .expect("read")
        .expect("B lists it");
    assert_eq!(entry.reason, "Invalid address");
    // B's API shows the cluster's entry, and a removal on B reaches A.
    let (status, body) = b.admin_get("/api/suppressions").await;
    assert_eq!(status, 200);
    assert!(body.contains("gone@remote.test"), "{body}");
    b.running()
        .suppressions
        .remove("gone@remote.test")
        .await
        .expect("remove");
    let list = a.running().suppressions.clone();
    eventually(15, "removal on B reaches A", || {
        let list = list.clone();
        async move { (!list.is_suppressed("gone@remote.test")).then_some(()) }
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_token_made_on_node_a_is_accepted_on_node_b() {
    let redis = Redis::start().await;
    let a = node(&redis, "a", "").await;
    let b = node(&redis, "b", "").await;
    let (ka, kb) = (&a.running().token_key, &b.running().token_key);
    let id = mxgate::envelope::QueueId::generate();
    assert_eq!(kb.verify(&ka.issue(id, 2)), Some((id, 2)));
    // An unsubscribe by mail to B with A's token: B suppresses, and so does A.
    let token = ka.issue_unsubscribe("reader@remote.test");
    let mut c = b.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<reader@remote.test>")
        .await
        .expect_code(250);
    c.cmd(&format!("RCPT TO:<unsubscribe+{token}@example.test>"))
        .await
        .expect_code(250);
    wait_refused(&b, "reader@remote.test").await;
    wait_refused(&a, "reader@remote.test").await;
    a.shutdown().await;
    b.shutdown().await;
}

fn warming_toml(sink: &Sink) -> String {
    format!(
        r#"
[relay]
trusted_networks = ["127.0.0.1/32"]
[[relay.smarthosts]]
name = "sink"
host = "127.0.0.1"
port = {}
security = "none"
[warming]
enabled = true
[[warming.schedule]]
days = "1+"
daily_cap = 10
"#,
        sink.addr.port()
    )
}

/// One message per address, relayed from [`SENDER`] through `srv`'s submission listener.
async fn relay(srv: &TestServer, prefix: &str, n: usize) {
    relay_to(srv, prefix, "remote.test", n).await
}

async fn relay_to(srv: &TestServer, prefix: &str, domain: &str, n: usize) {
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO app.internal").await.expect_code(250);
    for i in 0..n {
        let rcpt = format!("{prefix}{i}@{domain}");
        c.cmd(&format!("MAIL FROM:<{SENDER}>"))
            .await
            .expect_code(250);
        c.cmd(&format!("RCPT TO:<{rcpt}>")).await.expect_code(250);
        c.cmd("DATA").await.expect_code(354);
        let body = format!("From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: m{i}\r\n\r\nHi\r\n");
        c.send_data(&body).await.expect_code(250);
    }
    c.cmd("QUIT").await;
}

/// (sent, held for the warming cap) on `srv`.
fn states(srv: &TestServer) -> (usize, usize) {
    states_for(srv, "warming cap")
}

/// (sent, held with `reason` in the last reply) on `srv`.
fn states_for(srv: &TestServer, reason: &str) -> (usize, usize) {
    let all: Vec<_> = srv
        .running()
        .queue
        .list(None, 10_000)
        .into_iter()
        .flat_map(|m| m.recipients)
        .collect();
    let sent = all.iter().filter(|r| r.state == RcptState::Sent).count();
    let held = all
        .iter()
        .filter(|r| {
            r.state == RcptState::Deferred
                && r.last_reply.as_deref().is_some_and(|l| l.contains(reason))
        })
        .count();
    (sent, held)
}

async fn wait_states(srv: &TestServer, want: (usize, usize)) {
    eventually(20, &format!("(sent, held) = {want:?}"), || async {
        (states(srv) == want).then_some(())
    })
    .await;
}

async fn sink() -> Sink {
    Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await
}

#[tokio::test]
async fn a_shared_daily_cap_of_ten_lets_exactly_ten_out_across_both_nodes() {
    let redis = Redis::start().await;
    let sink = sink().await;
    let a = node(&redis, "a", &warming_toml(&sink)).await;
    let b = node(&redis, "b", &warming_toml(&sink)).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    relay(&a, "a", 8).await;
    relay(&b, "b", 8).await;
    eventually(20, "16 recipients sent or held", || async {
        let (sa, ha) = states(&a);
        let (sb, hb) = states(&b);
        (sa + ha + sb + hb == 16).then_some(())
    })
    .await;
    let (sa, sb) = (states(&a).0, states(&b).0);
    assert_eq!(sa + sb, 10, "A sent {sa}, B sent {sb}");
    assert_eq!(sink.received().len(), 10);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_providers_hourly_rate_is_one_gcra_shared_by_both_nodes() {
    let redis = Redis::start().await;
    let sink = sink().await;
    let toml = format!(
        "{}\n[warming.providers.gmail]\nnew_hourly = 4\nwarmed_hourly = 40\n",
        warming_toml(&sink)
    );
    let a = node(&redis, "a", &toml).await;
    let b = node(&redis, "b", &toml).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    relay_to(&a, "a", "gmail.com", 4).await;
    relay_to(&b, "b", "gmail.com", 4).await;
    eventually(20, "8 gmail recipients sent or held", || async {
        let (sa, ha) = states_for(&a, "provider rate");
        let (sb, hb) = states_for(&b, "provider rate");
        (sa + ha + sb + hb == 8).then_some(())
    })
    .await;
    let (sa, sb) = (states_for(&a, "x").0, states_for(&b, "x").0);
    assert_eq!(
        sa + sb,
        4,
        "A sent {sa}, B sent {sb}: the burst is the hourly cap of 4"
    );
    assert_eq!(sink.received().len(), 4);
    a.shutdown().await;
    b.shutdown().await;
}

/// `n` gmail.com recipients relayed through `srv`, each once the one before is sent or held
/// for the provider rate. Admissions of one node in flight together may reach Redis in the
/// other order than they read the clock, and the later one then finds the cell taken for
/// a millisecond (a hold that retries at once, or with a pool, the next IP): not this test.
async fn relay_one_by_one(srv: &TestServer, prefix: &str, n: usize) {
    for i in 0..n {
        relay_to(srv, &format!("{prefix}{i}-"), "gmail.com", 1).await;
        eventually(20, &format!("{prefix}: {} sent or held", i + 1), || async {
            let (sent, held) = states_for(srv, "provider rate");
            (sent + held == i + 1).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_pool_ips_hourly_rate_is_its_own_gcra_shared_by_both_nodes() {
    let redis = Redis::start().await;
    let sink = sink().await;
    // Gmail at 2 an hour per source IP of the pool both nodes send from.
    let toml = format!(
        "{}\n[streams]\ntransactional_source_ips = [{{ ip = \"127.0.0.1\" }}, {{ ip = \"127.0.0.2\" }}]\n\
         [warming.providers.gmail]\nnew_hourly = 2\nwarmed_hourly = 2\n",
        warming_toml(&sink)
    );
    let a = node(&redis, "a", &toml).await;
    let b = node(&redis, "b", &toml).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    // Node a spends the hour of gmail.com's first IP of the pool.
    relay_one_by_one(&a, "a", 2).await;
    assert_eq!(states_for(&a, "provider rate"), (2, 0));
    let first = sink.received()[0].peer.to_string();
    let from = |ip: &str| {
        let r = sink.received();
        r.iter().filter(|m| m.peer.to_string() == ip).count()
    };
    assert_eq!(
        from(&first),
        2,
        "one domain leaves from one IP while it has room"
    );
    // Node b's own limiter still has room on that IP: the cluster refuses it, and b takes
    // the pool's other IP (its own cell of 2) instead of holding; the third is held.
    relay_one_by_one(&b, "b", 3).await;
    assert_eq!(states_for(&b, "provider rate"), (2, 1));
    let other = if first == "127.0.0.1" {
        "127.0.0.2"
    } else {
        "127.0.0.1"
    };
    assert_eq!((from(&first), from(other)), (2, 2), "{:?}", sink.received());
    let mut conn = redis.connection().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*warm:h:*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].ends_with("warm:h:example.test:gmail:127.0.0.1"),
        "{keys:?}"
    );
    assert!(
        keys[1].ends_with("warm:h:example.test:gmail:127.0.0.2"),
        "{keys:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn with_redis_killed_both_nodes_go_on_at_half_the_cap_and_converge_when_it_returns() {
    let mut redis = Redis::start().await;
    let sink = sink().await;
    let a = node(&redis, "a", &warming_toml(&sink)).await;
    let b = node(&redis, "b", &warming_toml(&sink)).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;

    redis.kill();
    wait_up(&a, 0.0).await;
    wait_up(&b, 0.0).await;
    let down = wait_event(&a, "cluster_down").await;
    assert_eq!(down["sender"], "a");
    // Nothing stops: an operator's suppression on A, relayed mail on both.
    a.running()
        .suppressions
        .add(
            "late@remote.test",
            "asked",
            mxgate::suppression::Source::Manual,
            None,
        )
        .await
        .expect("suppress without Redis");
    relay(&a, "a", 8).await;
    relay(&b, "b", 8).await;
    // Each node's share of the cap of 10 is 10 / cluster.nodes = 5; nothing is dropped.
    wait_states(&a, (5, 3)).await;
    wait_states(&b, (5, 3)).await;
    assert_eq!(sink.received().len(), 10);
    assert!(!b.running().suppressions.is_suppressed("late@remote.test"));

    redis.restart().await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    wait_event(&b, "cluster_up").await;
    wait_refused(&b, "late@remote.test").await;
    let mut conn = redis.connection().await;
    let today = a.running().clock.now_ms() / 86_400_000;
    let key = format!("mxgate:warm:d:example.test:{today}");
    eventually(15, "the day's 10 sends replayed to Redis", || {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            let n: Option<u64> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .ok()?;
            (n == Some(10)).then_some(())
        }
    })
    .await;
    let replayed = [("kind", "warming")];
    assert_eq!(a.metric(CLUSTER_REPLAYED, &replayed).await, Some(5.0));
    assert_eq!(b.metric(CLUSTER_REPLAYED, &replayed).await, Some(5.0));
    let entry: Option<String> = redis::cmd("HGET")
        .arg("mxgate:supp")
        .arg("late@remote.test")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert!(entry.is_some_and(|e| e.contains("asked")));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_restarted_while_redis_is_down_starts_and_keeps_the_clusters_token_key() {
    let mut redis = Redis::start().await;
    let a = node(&redis, "a", "").await;
    let mut b = node(&redis, "b", "").await;
    let id = mxgate::envelope::QueueId::generate();
    let token = a.running().token_key.issue(id, 0);
    assert_eq!(b.running().token_key.verify(&token), Some((id, 0)));
    redis.kill();
    b.restart().await;
    wait_up(&b, 0.0).await;
    assert_eq!(b.running().token_key.verify(&token), Some((id, 0)));
    // What B issues now, A (which never restarted) accepts.
    let back = b.running().token_key.issue(id, 1);
    assert_eq!(a.running().token_key.verify(&back), Some((id, 1)));
    a.shutdown().await;
    b.shutdown().await;
}
