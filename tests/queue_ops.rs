//! Operator actions beyond retry/cancel (issue 15 items 6 and 7): redeliver an inbound
//! message to the ERP again, hold and release a message (Postfix's `postsuper -h/-H`) —
//! through the admin API and through `mxgate queue ...` as a real process, against a real
//! server and the stand-in ERP.

mod common;

use common::erp::http_request;
use common::{TestServer, eventually, message};
use mxgate::queue::{QueuedMessage, RcptState};

/// Runs `mxgate queue ARGS... --admin URL`; returns (exit code, stdout).
fn queue_cli(srv: &TestServer, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .arg("queue")
        .args(["--admin", &srv.admin_url()])
        .args(args)
        .output()
        .expect("run mxgate queue");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn post(srv: &TestServer, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_request("POST", &format!("{}{path}", srv.admin_url()), "").await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// The message whose Subject is `subject`, once `done` holds for its first recipient.
async fn message_when(
    srv: &TestServer,
    what: &str,
    done: impl Fn(&QueuedMessage) -> bool,
) -> QueuedMessage {
    eventually(10, what, || async {
        srv.running()
            .queue
            .list(None, 100)
            .into_iter()
            .find(|m| done(m))
    })
    .await
}

fn first_state(m: &QueuedMessage) -> RcptState {
    m.recipients[0].state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_hands_a_delivered_message_to_the_erp_again() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("redeliver-me", "processed wrongly the first time"),
    )
    .await
    .expect_code(250);
    let m = message_when(&srv, "delivered", |m| first_state(m) == RcptState::Sent).await;
    let id = m.id.to_string();
    assert_eq!(srv.erp.pushes().len(), 1);

    let (status, v) = post(&srv, &format!("/api/queue/{id}/redeliver")).await;
    assert_eq!((status, &v["redelivered"]), (200, &serde_json::json!(1)));
    eventually(10, "second push", || async {
        (srv.erp.pushes().len() == 2).then_some(())
    })
    .await;
    // Through the CLI, a third time.
    let (code, out) = queue_cli(&srv, &["redeliver", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 recipient(s) redelivered"), "{out}");
    let pushes = eventually(10, "third push", || async {
        let p = srv.erp.pushes();
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &pushes {
        assert_eq!(
            p.header("x-mxgate-queue-id"),
            Some(id.as_str()),
            "same id, de-dupable"
        );
        assert!(String::from_utf8_lossy(&p.body).contains("Subject: redeliver-me"));
    }
    let m = message_when(&srv, "sent again", |m| {
        first_state(m) == RcptState::Sent && m.recipients[0].attempts == 3
    })
    .await;
    assert_eq!(m.recipients[0].last_reply.as_deref(), Some("HTTP 200 OK"));
    srv.shutdown().await;
}

#[tokio::test]
async fn redeliver_of_an_unknown_message_is_404_and_a_pending_one_changes_nothing() {
    let srv = TestServer::start("").await;
    let (status, _) = post(&srv, "/api/queue/00000000000000AB/redeliver").await;
    assert_eq!(status, 404);
    srv.erp.answer(503);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("not-yet", "x"),
    )
    .await
    .expect_code(250);
    let m = message_when(&srv, "deferred", |m| m.recipients[0].attempts >= 1).await;
    let (status, v) = post(&srv, &format!("/api/queue/{}/redeliver", m.id)).await;
    assert_eq!((status, &v["redelivered"]), (200, &serde_json::json!(0)));
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_waits_until_released() {
    let srv = TestServer::start("").await;
    srv.erp.answer(503);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("hold-me", "x"),
    )
    .await
    .expect_code(250);
    let m = message_when(&srv, "deferred", |m| m.recipients[0].attempts >= 1).await;
    let id = m.id.to_string();
    let (code, out) = queue_cli(&srv, &["hold", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 recipient(s) held"), "{out}");
    let held = srv.running().queue.get(m.id).expect("still stored");
    assert_eq!(first_state(&held), RcptState::Held);
    let (_, listed) = srv.admin_get("/api/queue?state=held").await;
    assert!(listed.contains(&id), "{listed}");

    // The ERP is back. Once the held recipient's old retry time has passed, a new message
    // goes through; the held one, due before it, would have gone first (the scheduler runs
    // in due order) had it not been held.
    srv.erp.answer(200);
    let was_due = held.recipients[0].next_attempt_ms;
    eventually(5, "the held recipient's retry time passes", || async {
        (mxgate::clock::Clock::system().now_ms() > was_due).then_some(())
    })
    .await;
    srv.send_inbound(
        "alice@client.test",
        &["support@example.test"],
        &message("after-hold", "x"),
    )
    .await
    .expect_code(250);
    eventually(10, "the later message delivered", || async {
        srv.erp
            .pushes()
            .iter()
            .any(|p| p.header("x-mxgate-envelope-to") == Some("support@example.test"))
            .then_some(())
    })
    .await;
    assert_eq!(srv.erp.pushes().len(), 1, "nothing of the held message");
    assert_eq!(
        first_state(&srv.running().queue.get(m.id).expect("m")),
        RcptState::Held
    );

    let (status, v) = post(&srv, &format!("/api/queue/{id}/release")).await;
    assert_eq!((status, &v["released"]), (200, &serde_json::json!(1)));
    message_when(&srv, "delivered after release", |x| {
        x.id == m.id && first_state(x) == RcptState::Sent
    })
    .await;
    assert_eq!(srv.erp.pushes().len(), 2);
    // Released again: nothing held any more; hold of a finished message changes nothing.
    let (_, out) = queue_cli(&srv, &["release", &id]);
    assert!(out.contains("0 recipient(s) released"), "{out}");
    let (status, v) = post(&srv, &format!("/api/queue/{id}/hold")).await;
    assert_eq!((status, &v["held"]), (200, &serde_json::json!(0)));
    srv.shutdown().await;
}
