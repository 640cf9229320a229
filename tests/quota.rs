//! Quotas and the disk guard (issue 11): over `queue.max_messages`, `max_bytes` or under
//! `min_free_disk`, new mail gets `452 4.3.1 Insufficient system storage` at MAIL and RCPT
//! on every listener; what was already accepted is delivered (and the DSNs it owes are
//! queued); intake resumes by itself once deliveries bring the usage down.

mod common;

use common::metrics::sample;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::{Erp, Listener, TestServer, eventually, message};
use mxgate::config::{ByteSize, Config};
use mxgate::metrics::{DISK_FREE, QUEUE_BACKLOG, QUEUE_BYTES};
use mxgate::queue::RcptState;

const FULL: &str = "452 4.3.1 Insufficient system storage";

async fn start(extra: &str, change: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_configured(Erp::start().await, extra, change).await
}

/// MAIL on a fresh inbound session: the reply, code first.
async fn mail_reply(srv: &TestServer) -> String {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>").await.to_string()
}

async fn delivered(srv: &TestServer, subjects: &[&str]) {
    eventually(20, &format!("{subjects:?} at the ERP"), || async {
        let pushes = srv.erp.pushes();
        let got = |s: &&str| {
            pushes
                .iter()
                .any(|p| String::from_utf8_lossy(&p.body).contains(&format!("Subject: {s}")))
        };
        subjects.iter().all(got).then_some(())
    })
    .await
}

#[tokio::test]
async fn max_messages_refuses_at_mail_and_rcpt_on_every_listener_and_resumes_after_deliveries() {
    let srv = start(&user_toml(&["example.test"]), |c| c.queue.max_messages = 2).await;
    srv.erp.answer(503);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("first", "x"),
    )
    .await
    .expect_code(250);
    // A transaction opened while there is room...
    let mut open = srv.smtp(Listener::Inbound).await;
    open.cmd("EHLO client.test").await.expect_code(250);
    open.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("second", "x"),
    )
    .await
    .expect_code(250);
    // ...is refused its recipient once the queue is full; so is a new one, everywhere.
    let rcpt = open.cmd("RCPT TO:<support@example.test>").await;
    assert_eq!(rcpt.to_string(), FULL);
    assert_eq!(mail_reply(&srv).await, FULL);
    let raw = "From: <odoo@example.test>\r\nTo: <a@remote.test>\r\nSubject: out\r\n\r\nHi\r\n";
    let err = submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["a@remote.test"],
        raw,
    )
    .await
    .expect_err("submission refused while full");
    assert!(err.contains("452") && err.contains("4.3.1"), "{err}");

    let (_, scrape) = srv.admin_get("/metrics").await;
    assert_eq!(sample(&scrape, QUEUE_BACKLOG, &[]), Some(2.0), "{scrape}");
    assert!(
        sample(&scrape, QUEUE_BYTES, &[]).is_some_and(|b| b > 0.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, DISK_FREE, &[]).is_some_and(|b| b > 0.0),
        "{scrape}"
    );
    common::promtool_check_metrics(&scrape);

    // Nothing accepted is lost: both go out once the ERP is back, and intake resumes.
    srv.erp.answer(200);
    delivered(&srv, &["first", "second"]).await;
    eventually(20, "intake resumes", || async {
        mail_reply(&srv).await.starts_with("250").then_some(())
    })
    .await;
    let rcpt = open.cmd("RCPT TO:<support@example.test>").await;
    rcpt.expect_code(250);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("third", "x"),
    )
    .await
    .expect_code(250);
    delivered(&srv, &["third"]).await;
    // The ERP has the push before the queue has recorded it as sent: wait for the gauge.
    eventually(20, "queue bytes back to 0", || async {
        let (_, scrape) = srv.admin_get("/metrics").await;
        (sample(&scrape, QUEUE_BYTES, &[]) == Some(0.0)).then_some(())
    })
    .await;
    let (_, scrape) = srv.admin_get("/metrics").await;
    assert_eq!(sample(&scrape, QUEUE_BYTES, &[]), Some(0.0), "{scrape}");
    srv.shutdown().await;
}

#[tokio::test]
async fn max_bytes_counts_the_bodies_waiting_for_delivery() {
    let srv = start("", |c| c.queue.max_bytes = ByteSize(4096)).await;
    srv.erp.answer(503);
    let small = message("small", "x");
    srv.send_inbound("alice@client.test", &["sales@example.test"], &small)
        .await
        .expect_code(250);
    assert!(mail_reply(&srv).await.starts_with("250"), "under max_bytes");
    let big = message("big", &"y".repeat(8192));
    srv.send_inbound("alice@client.test", &["sales@example.test"], &big)
        .await
        .expect_code(250);
    assert_eq!(mail_reply(&srv).await, FULL);
    srv.erp.answer(200);
    delivered(&srv, &["small", "big"]).await;
    eventually(20, "intake resumes", || async {
        mail_reply(&srv).await.starts_with("250").then_some(())
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_dsn_owed_while_full_is_still_queued_and_delivered() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["550 5.1.1 <gone@remote.test>: Recipient address rejected: User unknown"]);
    let extra = format!(
        "{}[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        user_toml(&["example.test"]),
        sink.addr.port()
    );
    let srv = start(&extra, |c| c.queue.max_messages = 1).await;
    // The DSN goes to the sender, an ERP alias that is down: it stays in the queue.
    srv.erp.answer(503);
    let raw =
        "From: <sales@example.test>\r\nTo: <gone@remote.test>\r\nSubject: bounce\r\n\r\nHi\r\n";
    submit(
        srv.addr(Listener::Submission),
        "sales@example.test",
        &["gone@remote.test"],
        raw,
    )
    .await
    .expect("submitted while there was room");
    let q = srv.running().queue.clone();
    let dsn = eventually(20, "DSN queued", || async {
        q.list(None, 10)
            .into_iter()
            .find(|m| m.mail_from.is_empty() && m.recipients[0].state.is_pending())
    })
    .await;
    assert_eq!(mail_reply(&srv).await, FULL, "the DSN fills the queue");
    srv.erp.answer(200);
    eventually(20, "DSN delivered", || async {
        (q.get(dsn.id)?.recipients[0].state == RcptState::Sent).then_some(())
    })
    .await;
    eventually(20, "intake resumes", || async {
        mail_reply(&srv).await.starts_with("250").then_some(())
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn min_free_disk_above_the_free_space_refuses_and_a_lower_one_accepts() {
    let mut srv = start("", |c| c.queue.min_free_disk = ByteSize(u64::MAX / 2)).await;
    assert_eq!(mail_reply(&srv).await, FULL);
    let (_, scrape) = srv.admin_get("/metrics").await;
    let free = sample(&scrape, DISK_FREE, &[]).expect("free space gauge");
    assert!(free > 0.0, "{scrape}");

    srv.config.queue.min_free_disk = ByteSize(1024 * 1024);
    srv.restart().await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("room", "x"),
    )
    .await
    .expect_code(250);
    delivered(&srv, &["room"]).await;
    srv.shutdown().await;
}
