//! The admin port: health and Prometheus metrics reflect real traffic.

mod common;

use common::{Listener, TestServer, eventually, message};

#[tokio::test]
async fn healthz_answers_ok() {
    let srv = TestServer::start("").await;
    let (status, body) = srv.admin_get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    srv.shutdown().await;
}

#[tokio::test]
async fn metrics_count_accepted_and_rejected_mail_and_queue_states() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("m1", "x"),
    )
    .await
    .expect_code(250);
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    c.cmd("RCPT TO:<someone@elsewhere.test>")
        .await
        .expect(550, "5.7.1");
    c.cmd("QUIT").await.expect_code(221);
    eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;

    let body = eventually(10, "metrics with a sent recipient", || async {
        let (_, body) = srv.admin_get("/metrics").await;
        body.contains("mxgate_queue_messages{state=\"sent\"} 1")
            .then_some(body)
    })
    .await;
    assert!(
        body.contains("mxgate_inbound_messages_total{result=\"accepted\""),
        "{body}"
    );
    assert!(
        body.contains("mxgate_inbound_recipients_total{result=\"rejected\""),
        "{body}"
    );
    assert!(
        body.contains("mxgate_delivery_attempts_total{result=\"sent\",provider=\"http\"} 1"),
        "{body}"
    );
    assert!(body.contains("mxgate_store_commits_total"), "{body}");
    assert!(
        body.contains("# TYPE mxgate_delivery_duration_seconds histogram"),
        "{body}"
    );
    srv.shutdown().await;
}

/// Runs `mxgate queue ARGS... --admin URL` as a real process; returns (exit code, stdout, stderr).
fn queue_cli(srv: &TestServer, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .arg("queue")
        .args(["--admin", &srv.admin_url()])
        .args(args)
        .output()
        .expect("run mxgate queue");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn state_of(srv: &TestServer) -> Option<mxgate::queue::RcptState> {
    let msgs = srv.running().queue.list(None, 10);
    Some(msgs.first()?.recipients.first()?.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reads_the_error_and_retries_a_failed_message_through_the_cli() {
    use mxgate::queue::RcptState;
    let srv = TestServer::start("").await;
    srv.erp.answer(404);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("misrouted", "x"),
    )
    .await
    .expect_code(250);
    eventually(10, "bounced", || async {
        (state_of(&srv).await == Some(RcptState::Bounced)).then_some(())
    })
    .await;

    let (code, out, err) =
        tokio::task::block_in_place(|| queue_cli(&srv, &["list", "--state", "bounced"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("bounced") && out.contains("sales@example.test") && out.contains("404"),
        "{out}"
    );
    let id = srv.running().queue.list(None, 1)[0].id.to_string();

    let (_, show, _) = tokio::task::block_in_place(|| queue_cli(&srv, &["show", &id]));
    assert!(show.contains("\"last_reply\""), "{show}");

    srv.erp.answer(200);
    let (code, out, err) = tokio::task::block_in_place(|| queue_cli(&srv, &["retry", &id]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 recipient(s) requeued"), "{out}");
    eventually(10, "sent after retry", || async {
        (state_of(&srv).await == Some(RcptState::Sent)).then_some(())
    })
    .await;
    assert_eq!(srv.erp.pushes().len(), 1);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cancels_a_deferred_message_and_unknown_ids_are_clear_errors() {
    use mxgate::queue::RcptState;
    let srv = TestServer::start("").await;
    srv.erp.answer(503);
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("stuck", "x"),
    )
    .await
    .expect_code(250);
    eventually(10, "deferred", || async {
        (state_of(&srv).await == Some(RcptState::Deferred)).then_some(())
    })
    .await;
    let id = srv.running().queue.list(None, 1)[0].id.to_string();
    let (code, out, err) = tokio::task::block_in_place(|| queue_cli(&srv, &["cancel", &id]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 recipient(s) cancelled"), "{out}");
    assert_eq!(state_of(&srv).await, Some(RcptState::Cancelled));

    let (code, _, err) =
        tokio::task::block_in_place(|| queue_cli(&srv, &["show", "00000000DEADBEEF"]));
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("no message"), "{err}");
    let (code, _, err) =
        tokio::task::block_in_place(|| queue_cli(&srv, &["list", "--state", "lost"]));
    assert_eq!(code, 1);
    assert!(err.contains("unknown state"), "{err}");
    srv.shutdown().await;
}

#[tokio::test]
async fn api_requires_the_bearer_token_when_one_is_configured() {
    let srv = TestServer::start("").await;
    let (status, _) = srv.admin_get("/api/queue").await;
    assert_eq!(status, 200, "no token configured: open on loopback");
    srv.shutdown().await;

    let erp = common::Erp::start().await;
    let srv = TestServer::start_configured(erp, "", |c| {
        c.admin.token = mxgate::config::Secret::new("s3cret")
    })
    .await;
    let url = format!("{}/api/queue", srv.admin_url());
    assert_eq!(common::erp::http_get(&url).await.0, 401);
    let (status, _) =
        common::erp::http_request_with("GET", &url, "", &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
    let (status, body) =
        common::erp::http_request_with("GET", &url, "", &[("Authorization", "Bearer s3cret")])
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(srv.admin_get("/healthz").await.0, 200, "health stays open");
    srv.shutdown().await;
}

#[test]
fn metric_samples_are_found_by_name_and_a_subset_of_their_labels() {
    let scrape =
        "# TYPE x counter\nx{a=\"1\",b=\"q\\\"t\"} 2\nx{a=\"1\",b=\"z\"} 3\nx_sum 9\ny inf\n";
    assert_eq!(
        common::metrics::sample(scrape, "x", &[("a", "1")]),
        Some(5.0)
    );
    assert_eq!(
        common::metrics::sample(scrape, "x", &[("b", "q\"t")]),
        Some(2.0)
    );
    assert_eq!(common::metrics::sample(scrape, "x", &[("a", "2")]), None);
    assert_eq!(common::metrics::sample(scrape, "x_sum", &[]), Some(9.0));
    assert_eq!(
        common::metrics::sample(scrape, "y", &[]),
        Some(f64::INFINITY)
    );
    assert_eq!(common::metrics::sample(scrape, "z", &[]), None);
}
