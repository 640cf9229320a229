//! The ERP events webhook (`[events]`) against a real HTTP receiver: what each outcome
//! reports, and that events wait in the durable outbox while the receiver is down — across
//! a restart — instead of being lost or holding up delivery.

mod common;
mod traffic;

use common::messages::{arf, dsn_user_unknown};
use common::{Erp, TestServer, eventually, message};
use mxgate::config::HumanDuration;
use mxgate::metrics::BOUNCES;
use serde_json::Value;

fn events_toml(receiver: &Erp, inbound: bool) -> String {
    format!(
        "[events]\nurl = \"{}/events\"\ntoken = \"evt0k\"\ninbound = {inbound}\nretry_max = \"1s\"\n",
        receiver.url()
    )
}

/// Waits for the first event of `kind`; returns every event so far and that one.
async fn wait_event(receiver: &Erp, kind: &str) -> (Vec<Value>, Value) {
    let all = eventually(20, &format!("{kind} event"), || async {
        let e = events(receiver);
        e.iter().any(|v| v["event"] == kind).then_some(e)
    })
    .await;
    let found = all
        .iter()
        .find(|v| v["event"] == kind)
        .cloned()
        .expect("found above");
    (all, found)
}

fn events(receiver: &Erp) -> Vec<Value> {
    receiver
        .pushes()
        .iter()
        .filter(|p| p.path == "/events")
        .map(|p| serde_json::from_slice(&p.body).expect("event is JSON"))
        .collect()
}

async fn wait_events(receiver: &Erp, n: usize) -> Vec<Value> {
    eventually(20, &format!("{n} event(s)"), || async {
        let e = events(receiver);
        (e.len() >= n).then_some(e)
    })
    .await
}

#[tokio::test]
async fn inbound_route_outcomes_are_reported_deferred_delivered_and_bounced() {
    let receiver = Erp::start().await;
    let srv = TestServer::start(&events_toml(&receiver, true)).await;
    srv.erp.answer(503);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("ev-1", "x"),
    )
    .await
    .expect_code(250);
    let first = wait_events(&receiver, 1).await;
    assert_eq!(first[0]["event"], "deferred");
    assert_eq!(first[0]["recipient"], "sales@example.test");
    assert_eq!(first[0]["message_id"], "ev-1@client.test");
    assert_eq!(first[0]["sender"], "alice@client.test");
    assert_eq!(first[0]["direction"], "inbound");
    assert!(first[0]["reply"].as_str().unwrap_or("").contains("503"));
    srv.erp.answer(200);
    let (all, delivered) = wait_event(&receiver, "delivered").await;
    assert_eq!(delivered["reply"], "HTTP 200 OK");
    assert_eq!(delivered["queue_id"], first[0]["queue_id"]);
    // Ids increase in the order the events happened.
    let ids: Vec<u64> = all.iter().map(|v| v["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let push = receiver.pushes().into_iter().next().expect("push");
    assert_eq!(push.header("authorization"), Some("Bearer evt0k"));
    assert_eq!(push.header("content-type"), Some("application/json"));
    assert_eq!(
        push.header("x-mxgate-event-id"),
        Some(ids[0].to_string().as_str())
    );

    srv.erp.answer(404);
    srv.send_inbound(
        "alice@client.test",
        &["support@example.test"],
        &message("ev-2", "y"),
    )
    .await
    .expect_code(250);
    let (_, bounced) = wait_event(&receiver, "bounced").await;
    assert_eq!(bounced["recipient"], "support@example.test");
    assert!(bounced["reply"].as_str().unwrap_or("").contains("404"));
    srv.shutdown().await;
}

#[tokio::test]
async fn giving_up_after_expiry_is_reported_as_expired() {
    let receiver = Erp::start().await;
    let erp_down = Erp::reserve();
    let srv = TestServer::start_configured(erp_down, &events_toml(&receiver, true), |c| {
        c.queue.expire_after = HumanDuration::secs(1);
    })
    .await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("ev-exp", "x"),
    )
    .await
    .expect_code(250);
    let (_, expired) = wait_event(&receiver, "expired").await;
    assert_eq!(expired["message_id"], "ev-exp@client.test");
    assert!(expired["attempts"].as_u64().unwrap_or(0) >= 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn relayed_mail_reports_delivered_and_bounced_with_category_and_remote_reply() {
    let receiver = Erp::start().await;
    let sink = traffic::sink().await;
    let srv = TestServer::start(&traffic::relay_toml(&sink, &events_toml(&receiver, false))).await;
    traffic::record(
        &srv,
        &sink,
        &[
            traffic::send("shop@example.test", "ann@gmail.com", None),
            traffic::send(
                "shop@example.test",
                "nobody@gmail.com",
                Some("550 5.1.1 The email account that you tried to reach does not exist. gsmtp"),
            ),
        ],
    )
    .await;
    let all = wait_events(&receiver, 2).await;
    let delivered = all
        .iter()
        .find(|v| v["event"] == "delivered")
        .expect("delivered");
    assert_eq!(delivered["recipient"], "ann@gmail.com");
    assert_eq!(delivered["sender"], "shop@example.test");
    assert_eq!(delivered["direction"], "outbound");
    assert!(delivered["reply"].as_str().unwrap_or("").starts_with("250"));
    let bounced = all
        .iter()
        .find(|v| v["event"] == "bounced")
        .expect("bounced");
    assert_eq!(bounced["recipient"], "nobody@gmail.com");
    assert_eq!(bounced["category"], "Invalid address");
    assert_eq!(bounced["status"], "5.1.1");
    assert!(
        bounced["reply"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist")
    );
    assert!(
        all.iter().all(|v| v["direction"] == "outbound"),
        "without events.inbound only relayed mail is reported: {all:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_the_receiver_is_down_even_across_a_restart() {
    let mut receiver = Erp::reserve();
    let mut srv = TestServer::start(&events_toml(&receiver, true)).await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("ev-out", "x"),
    )
    .await
    .expect_code(250);
    // Delivery is not held up by the dead webhook.
    eventually(20, "delivered to the ERP", || async {
        (!srv.erp.pushes().is_empty()).then_some(())
    })
    .await;
    srv.restart().await;
    receiver.up().await;
    let all = wait_events(&receiver, 1).await;
    assert_eq!(all[0]["event"], "delivered");
    assert_eq!(all[0]["message_id"], "ev-out@client.test");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_dsn_after_the_smart_host_accepted_reports_bounced_and_counts_in_the_statistics() {
    let receiver = Erp::start().await;
    let sink = traffic::sink().await;
    let srv = TestServer::start(&traffic::relay_toml(&sink, &events_toml(&receiver, false))).await;
    traffic::record(
        &srv,
        &sink,
        &[traffic::send("news@shop.test", "late@yahoo.com", None)],
    )
    .await;
    let verp = sink.received()[0].mail_from.clone();
    let token = verp
        .strip_prefix("bounce+")
        .and_then(|l| l.split('@').next())
        .expect("VERP envelope sender");
    let mut c = srv.smtp(common::Listener::Inbound).await;
    c.cmd("EHLO mx.yahoo.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd(&format!("RCPT TO:<bounce+{token}@example.test>"))
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&dsn_user_unknown("mx.yahoo.test", "late@yahoo.com"))
        .await
        .expect_code(250);

    let all = eventually(20, "bounced event from the DSN", || async {
        let e = events(&receiver);
        e.iter().any(|v| v["event"] == "bounced").then_some(e)
    })
    .await;
    assert_eq!(
        all[0]["event"], "delivered",
        "the smart host's 250 came first"
    );
    let b = all
        .iter()
        .find(|v| v["event"] == "bounced")
        .expect("bounced");
    assert_eq!(b["recipient"], "late@yahoo.com");
    assert_eq!(b["sender"], "news@shop.test");
    assert_eq!(b["category"], "Invalid address");
    assert_eq!(b["status"], "5.1.1");
    assert_eq!(b["message_id"], all[0]["message_id"]);

    let (status, body) = srv
        .admin_get("/api/bounces/classification?sending_domain=shop.test")
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["rows"][0]["provider"], "yahoo");
    assert_eq!(v["rows"][0]["category"], "Invalid address");
    assert_eq!(v["rows"][0]["reply_code"], "550");
    assert_eq!(v["rows"][0]["count"], 1);
    // The DSN came later, yet it counts under the IP the delivery left from.
    let (_, body) = srv
        .admin_get("/api/bounces/classification?sending_domain=shop.test&sending_ip=127.0.0.1")
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["rows"][0]["count"], 1, "{body}");
    let labels = [("sending_domain", "shop.test"), ("sending_ip", "127.0.0.1")];
    assert!(srv.metric(BOUNCES, &labels).await.is_some());
    srv.shutdown().await;
}

/// Mails `body` to `bounce@example.test` (where feedback loops write) from the null sender.
async fn mail_report(srv: &TestServer, body: &str) {
    let mut c = srv.smtp(common::Listener::Inbound).await;
    c.cmd("EHLO mx.yahoo.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd("RCPT TO:<bounce@example.test>")
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(body).await.expect_code(250);
}

#[tokio::test]
async fn a_spam_complaint_about_our_message_is_reported_as_complained() {
    let receiver = Erp::start().await;
    let sink = traffic::sink().await;
    let srv = TestServer::start(&traffic::relay_toml(&sink, &events_toml(&receiver, false))).await;
    traffic::record(
        &srv,
        &sink,
        &[traffic::send("news@shop.test", "grumpy@yahoo.com", None)],
    )
    .await;
    let (_, delivered) = wait_event(&receiver, "delivered").await;
    let verp = sink.received()[0].mail_from.clone();
    assert!(verp.starts_with("bounce+"), "{verp}");

    // The feedback loop returns the headers of the message as delivered: our VERP
    // Return-Path names the message and recipient.
    let message_id = delivered["message_id"]
        .as_str()
        .expect("message id")
        .to_owned();
    mail_report(&srv, &arf("grumpy@yahoo.com", &verp, &message_id)).await;
    let (_, c) = wait_event(&receiver, "complained").await;
    assert_eq!(c["recipient"], "grumpy@yahoo.com");
    assert_eq!(c["queue_id"], delivered["queue_id"]);
    assert_eq!(c["message_id"], delivered["message_id"]);
    assert_eq!(c["sender"], "news@shop.test");
    assert_eq!(c["feedback_type"], "abuse");
    assert_eq!(c["provider"], "yahoo");
    assert_eq!(c["direction"], "outbound");
    // ... and, as before, the complainant is suppressed.
    let list = srv.running().suppressions.clone();
    eventually(10, "complainant suppressed", || {
        let list = list.clone();
        async move { list.get("grumpy@yahoo.com").ok().flatten() }
    })
    .await;

    // A report about a message that is not ours (no token: the fixture of a Yahoo report)
    // still tells the ERP who complained about which Message-ID, without a queue id.
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dsn/arf.eml"),
    )
    .expect("ARF fixture")
    .replace('\n', "\r\n");
    mail_report(&srv, &fixture).await;
    let foreign = eventually(20, "second complained event", || async {
        events(&receiver)
            .into_iter()
            .filter(|v| v["event"] == "complained")
            .nth(1)
    })
    .await;
    assert_eq!(foreign["recipient"], "grumpy@yahoo.com");
    assert_eq!(foreign["message_id"], "orig-arf@sender.test");
    assert_eq!(foreign["queue_id"], "");
    assert_eq!(foreign["feedback_type"], "abuse");
    assert_eq!(foreign["provider"], "yahoo");
    // Other events do not carry the complaint fields.
    assert!(delivered.get("feedback_type").is_none(), "{delivered}");

    // A feedback loop that strips the Return-Path but returns the Message-ID: the message
    // we delivered with it is still named (queue id and sender).
    common::submit::submit(
        srv.addr(common::Listener::Submission),
        "news@shop.test",
        &["fan@yahoo.com"],
        "From: <news@shop.test>\r\nTo: <fan@yahoo.com>\r\nSubject: Offer\r\nMessage-ID: <offer-7@shop.test>\r\n\r\nHello\r\n",
    )
    .await
    .expect("submitted");
    let second = eventually(20, "second delivered event", || async {
        events(&receiver)
            .into_iter()
            .find(|v| v["event"] == "delivered" && v["recipient"] == "fan@yahoo.com")
    })
    .await;
    mail_report(
        &srv,
        &arf("fan@yahoo.com", "news@shop.test", "offer-7@shop.test"),
    )
    .await;
    let by_id = eventually(20, "third complained event", || async {
        events(&receiver)
            .into_iter()
            .filter(|v| v["event"] == "complained")
            .nth(2)
    })
    .await;
    assert_eq!(by_id["recipient"], "fan@yahoo.com");
    assert_eq!(by_id["message_id"], "offer-7@shop.test");
    assert_eq!(by_id["queue_id"], second["queue_id"]);
    assert_eq!(by_id["sender"], "news@shop.test");
    // Without the token nothing proves the report genuine: no suppression.
    assert!(list.get("fan@yahoo.com").expect("read").is_none());
    srv.shutdown().await;
}

#[test]
fn a_bad_events_url_is_a_config_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    for (url, says) in [
        ("erp.test/events", "not an http"),
        ("ftp://erp.test/events", "not an http"),
    ] {
        let toml = common::base_toml(
            dir.path(),
            "http://127.0.0.1:1",
            &format!("[events]\nurl = \"{url}\"\n"),
        );
        let err = mxgate::config::Config::from_toml(&toml, std::path::Path::new("ev.toml"))
            .expect_err(url);
        let text = err.to_string();
        assert!(text.contains("events.url") && text.contains(says), "{text}");
    }
}
