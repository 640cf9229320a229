//! Retention (issue 11): a message whose recipients are all final is deleted — meta, body,
//! every index entry — `queue.retention` after its last transition, by the server's own
//! background purge, on a clock the test steps. Pending messages stay; statistics stay;
//! the admin API and `mxgate queue` show only what is left.

mod common;

use std::time::Duration;

use common::messages::dsn;
use common::sink::{Sink, SinkOptions, SinkTls, refused_port};
use common::submit::{submit, user_toml};
use common::{Erp, Listener, TestServer, eventually, message};
use mxgate::config::HumanDuration;
use mxgate::envelope::QueueId;
use mxgate::metrics::{BOUNCES, QUEUE_MESSAGES, QUEUE_PURGED};
use mxgate::queue::{Queue, RcptState};

const HOUR: u64 = 3600;

/// An alias whose HTTP route never answers (connection refused): its mail stays deferred.
async fn down_route() -> String {
    format!(
        "[[aliases]]\naddress = \"down@example.test\"\nroute = \"down\"\n\
         [routes.down]\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/x\"\ntimeout = \"2s\"\n",
        refused_port().await
    )
}

async fn start(retention: &str, extra: &str) -> TestServer {
    let retention = humantime::parse_duration(retention).expect("duration");
    TestServer::start_configured(Erp::start().await, extra, |c| {
        c.queue.retention = HumanDuration(retention);
        // Far beyond the clock steps below: the deferred message must not expire.
        c.queue.expire_after = HumanDuration::secs(30 * 24 * HOUR);
    })
    .await
}

/// Sends one message to `to` and returns its queue id (from the 250 reply).
async fn send(srv: &TestServer, to: &str, subject: &str) -> QueueId {
    let reply = srv
        .send_inbound("alice@client.test", &[to], &message(subject, "x"))
        .await;
    reply.expect_code(250);
    let id = reply.lines[0].rsplit(' ').next().expect("queue id");
    id.parse().unwrap_or_else(|_| panic!("queue id in {reply}"))
}

async fn wait_state(q: &Queue, id: QueueId, state: RcptState) {
    eventually(20, &format!("{id} {state:?}"), || async {
        (q.get(id)?.recipients[0].state == state).then_some(())
    })
    .await
}

async fn wait_gone(q: &Queue, id: QueueId) {
    eventually(20, &format!("{id} purged"), || async {
        q.get(id).is_none().then_some(())
    })
    .await
}

/// Waits until the purge has caught up twice more: the second pass began after this call,
/// so it has seen every entry due at the current (stepped) time.
async fn purge_passes(q: &Queue) {
    let start = q.retention_progress().passes;
    eventually(20, "two purge passes", || async {
        (q.retention_progress().passes >= start + 2).then_some(())
    })
    .await
}

/// A relayed message, submitted by the ERP and taken by the smart host `sink`: its id.
async fn relay_one(srv: &TestServer, sink: &Sink) -> QueueId {
    let raw = "From: <odoo@example.test>\r\nTo: <a@remote.test>\r\nSubject: relayed\r\n\r\nHi\r\n";
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["a@remote.test"],
        raw,
    )
    .await
    .expect("submitted");
    eventually(20, "relayed message sent", || async {
        let m = srv
            .running()
            .queue
            .list(Some(RcptState::Sent), 10)
            .into_iter()
            .next()?;
        (!sink.received().is_empty()).then_some(m.id)
    })
    .await
}

#[tokio::test]
async fn finished_messages_are_deleted_after_the_window_and_pending_ones_stay() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n{}",
        user_toml(&["example.test"]),
        sink.addr.port(),
        down_route().await
    );
    let srv = start("1h", &extra).await;
    let q = srv.running().queue.clone();
    let sent = relay_one(&srv, &sink).await;
    let pending = send(&srv, "down@example.test", "pending").await;
    wait_state(&q, pending, RcptState::Deferred).await;
    assert!(q.body(sent).is_some());

    // Inside the window: nothing goes.
    srv.running().clock.advance(Duration::from_secs(HOUR - 120));
    purge_passes(&q).await;
    assert!(q.get(sent).is_some(), "purged before its retention");
    assert_eq!(q.retention_progress().purged, 0);

    // Past it: the delivered message goes, body and indexes; the deferred one stays.
    srv.running().clock.advance(Duration::from_secs(240));
    wait_gone(&q, sent).await;
    // The rows vanish at the write; the state counts and the purge counter follow once the
    // group's fsync is done.
    eventually(20, "purge counted", || async {
        let counted = q.counts().get(&RcptState::Sent).copied().unwrap_or(0) == 0
            && srv.metric(QUEUE_PURGED, &[]).await == Some(1.0);
        counted.then_some(())
    })
    .await;
    assert!(q.body(sent).is_none(), "body left behind");
    assert!(
        q.list(Some(RcptState::Sent), 100).is_empty(),
        "s/ index left"
    );
    assert_eq!(q.counts().get(&RcptState::Sent).copied().unwrap_or(0), 0);
    let m = q.get(pending).expect("pending message kept");
    assert!(m.recipients[0].state.is_pending());
    assert!(q.body(pending).is_some());

    let (code, _) = srv.admin_get(&format!("/api/queue/{sent}")).await;
    assert_eq!(code, 404);
    let (code, list) = srv.admin_get("/api/queue").await;
    assert_eq!(code, 200);
    assert!(list.contains(&pending.to_string()), "{list}");
    assert!(!list.contains(&sent.to_string()), "{list}");
    let cli = queue_list_cli(&srv).await;
    assert!(cli.contains(&pending.to_string()), "{cli}");
    assert!(!cli.contains(&sent.to_string()), "{cli}");

    // What was learnt from it stays: the delivery statistics and the metrics.
    let (_, summary) = srv.admin_get("/api/bounces/summary").await;
    assert!(summary.contains("\"delivered\":1"), "{summary}");
    assert_eq!(srv.metric(QUEUE_PURGED, &[]).await, Some(1.0));
    assert_eq!(
        srv.metric(QUEUE_MESSAGES, &[("state", "sent")]).await,
        Some(0.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn retention_counts_from_the_last_transition_not_from_arrival() {
    let srv = start("1h", "").await;
    let q = srv.running().queue.clone();
    let id = send(&srv, "sales@example.test", "late-bounce").await;
    wait_state(&q, id, RcptState::Sent).await;
    srv.running().clock.advance(Duration::from_secs(HOUR - 60));
    // A DSN for it arrives just before the window ends: `bounced` now, a new window.
    let token = srv.running().token_key.issue(id, 0);
    bounce_dsn(&srv, &token).await;
    wait_state(&q, id, RcptState::Bounced).await;
    srv.running().clock.advance(Duration::from_secs(120));
    purge_passes(&q).await;
    assert!(q.get(id).is_some(), "purged by its first transition's time");
    srv.running().clock.advance(Duration::from_secs(HOUR));
    wait_gone(&q, id).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn retention_zero_deletes_at_once_but_only_after_the_bounce_stage_read_a_dsn() {
    let srv = start("0", &down_route().await).await;
    let q = srv.running().queue.clone();
    let pending = send(&srv, "down@example.test", "pending").await;
    let sent = send(&srv, "sales@example.test", "delivered").await;
    wait_gone(&q, sent).await;
    assert_eq!(srv.erp.pushes().len(), 1, "delivered before it went");

    // A DSN is kept until the bounce stage has counted it, then deleted too.
    bounce_dsn(&srv, "unknowntoken").await;
    eventually(20, "DSN counted", || async {
        let labels = [("category", "Invalid address")];
        srv.metric(BOUNCES, &labels).await.map(|_| ())
    })
    .await;
    eventually(20, "only the pending message left", || async {
        let left: Vec<QueueId> = q.list(None, 100).iter().map(|m| m.id).collect();
        (left == [pending]).then_some(())
    })
    .await;
    // The purger counts a batch once its delete has committed, just after the rows vanish.
    eventually(20, "both purges counted", || async {
        (q.retention_progress().purged == 2).then_some(())
    })
    .await;
    assert_eq!(q.retention_progress().purged, 2);
    srv.shutdown().await;
}

/// A DSN for `bounce+TOKEN@example.test` over the inbound listener.
async fn bounce_dsn(srv: &TestServer, token: &str) {
    let body = dsn(
        "mx.remote.test",
        "sales@example.test",
        "5.1.1",
        "550 5.1.1 User unknown",
    );
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd(&format!("RCPT TO:<bounce+{token}@example.test>"))
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&body).await.expect_code(250);
}

/// `mxgate queue list --json` against the running server, as an operator runs it (off the
/// test's runtime, which also serves the admin API).
async fn queue_list_cli(srv: &TestServer) -> String {
    let conf = srv.dir.path().join("cli.toml");
    std::fs::write(&conf, "[server]\nhostname = \"mx.example.test\"\n").expect("write config");
    let admin = srv.admin_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
            .args(["queue", "--config"])
            .arg(&conf)
            .args(["--admin", &admin, "list", "--json"])
            .output()
            .expect("run mxgate queue list")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
