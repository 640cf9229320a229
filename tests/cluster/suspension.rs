//! Suspensions and bounce windows across the two nodes: a storm split between them is
//! judged on one window, a suspension or a lift on one node holds on the other, also when it
//! was made while Redis was down and the node restarted before Redis came back.

use super::*;

/// A small window so that a few sends decide: 5 sends at least, over half bounced.
const SUSPEND: &str = "[suspension]\nwindow = 10\nmin_sends = 5\nthreshold_percent = 50\n";

/// The reply to MAIL FROM:<odoo@example.test> on a fresh authenticated session of `srv`.
async fn mail_from_code(srv: &TestServer) -> u16 {
    let mut c = srv.smtp(Listener::Submissions).await;
    c.cmd("EHLO erp.test").await.expect_code(250);
    c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "s3cret")))
        .await
        .expect_code(235);
    c.cmd("MAIL FROM:<odoo@example.test>").await.code
}

#[tokio::test]
async fn a_domain_suspended_on_node_a_is_refused_on_node_b_and_a_lift_on_b_frees_both() {
    let redis = Redis::start().await;
    let more = "[suspension]\nwindow = 10\nmin_sends = 5\nthreshold_percent = 50\n";
    let a = node(&redis, "a", more).await;
    let b = node(&redis, "b", more).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    assert_eq!(mail_from_code(&b).await, 250);
    for _ in 0..5 {
        a.running().suspensions.record("example.test", true).await;
    }
    assert!(a.running().suspensions.is_suspended("example.test"));
    eventually(15, "B refuses the domain A suspended", || async {
        (mail_from_code(&b).await == 550).then_some(())
    })
    .await;
    let (status, body) = common::erp::http_request(
        "DELETE",
        &format!("{}/api/suspensions?domain=example.test", b.admin_url()),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(15, "A accepts the domain again after B's lift", || async {
        (mail_from_code(&a).await == 250).then_some(())
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Relays through `sink`, with [`SUSPEND`].
fn storm_toml(sink: &Sink) -> String {
    format!(
        "[relay]\ntrusted_networks = [\"127.0.0.1/32\"]\n[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n{SUSPEND}",
        sink.addr.port()
    )
}

async fn wait_mail_from(srv: &TestServer, code: u16, what: &str) {
    eventually(20, what, || async {
        (mail_from_code(srv).await == code).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bounce_storm_split_over_two_nodes_suspends_the_domain_on_both() {
    let redis = Redis::start().await;
    let sink = sink().await;
    let a = node(&redis, "a", &storm_toml(&sink)).await;
    let b = node(&redis, "b", &storm_toml(&sink)).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    sink.script_rcpt(&["550 5.1.1 Recipient address rejected: User unknown"; 6]);
    // Three sends each: under min_sends = 5 on either node alone; across both, 6 of 6
    // bounced.
    relay_to(&a, "ga", "remote.test", 3).await;
    relay_to(&b, "gb", "remote.test", 3).await;
    wait_mail_from(&a, 550, "A refuses the domain").await;
    wait_mail_from(&b, 550, "B refuses the domain").await;
    let mut conn = redis.connection().await;
    let entry: Option<String> = redis::cmd("HGET")
        .arg("mxgate:susp")
        .arg("example.test")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    let entry = entry.expect("the suspension is in Redis");
    assert!(entry.contains("of the last 5 sends"), "{entry}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Waits until `srv` has replayed `n` suspension changes to Redis.
async fn wait_replayed(srv: &TestServer, n: f64) {
    let replayed = [("kind", "suspension")];
    eventually(15, "suspension changes replayed", || async {
        (srv.metric(CLUSTER_REPLAYED, &replayed).await == Some(n)).then_some(())
    })
    .await;
}

/// Suspends example.test on `srv` (five permanent bounces).
async fn suspend(srv: &TestServer) {
    for _ in 0..5 {
        srv.running().suspensions.record("example.test", true).await;
    }
    assert!(srv.running().suspensions.is_suspended("example.test"));
}

#[tokio::test]
async fn a_suspension_made_while_redis_is_down_reaches_b_after_a_restarts() {
    let mut redis = Redis::start().await;
    let mut a = node(&redis, "a", SUSPEND).await;
    let b = node(&redis, "b", SUSPEND).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    redis.stop_saving().await;
    wait_up(&a, 0.0).await;
    suspend(&a).await;
    a.restart().await;
    assert_eq!(mail_from_code(&b).await, 250, "B cannot know yet");
    redis.start_again().await;
    wait_mail_from(&b, 550, "B refuses the domain A suspended").await;
    wait_replayed(&a, 1.0).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_lift_made_while_redis_is_down_survives_a_restart_and_frees_b() {
    let mut redis = Redis::start().await;
    let mut a = node(&redis, "a", SUSPEND).await;
    let b = node(&redis, "b", SUSPEND).await;
    wait_up(&a, 1.0).await;
    wait_up(&b, 1.0).await;
    suspend(&a).await;
    wait_mail_from(&b, 550, "B refuses the domain A suspended").await;
    redis.stop_saving().await;
    wait_up(&a, 0.0).await;
    let (status, body) = common::erp::http_request(
        "DELETE",
        &format!("{}/api/suspensions?domain=example.test", a.admin_url()),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    a.restart().await;
    redis.start_again().await;
    wait_mail_from(&b, 250, "B accepts the domain again after A's lift").await;
    wait_replayed(&a, 1.0).await;
    assert_eq!(mail_from_code(&a).await, 250, "A kept its lift");
    a.shutdown().await;
    b.shutdown().await;
}
