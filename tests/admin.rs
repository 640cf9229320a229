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
    srv.send_inbound("alice@client.test", &["sales@example.test"], &message("m1", "x"))
        .await
        .expect_code(250);
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<someone@elsewhere.test>").await.expect(550, "5.7.1");
    c.cmd("QUIT").await.expect_code(221);
    eventually(10, "ERP push", || async { srv.erp.pushes().into_iter().next() }).await;

    let body = eventually(10, "metrics with a sent recipient", || async {
        let (_, body) = srv.admin_get("/metrics").await;
        body.contains("mxgate_queue_messages{state=\"sent\"} 1").then_some(body)
    })
    .await;
    assert!(body.contains("mxgate_inbound_messages_total{result=\"accepted\""), "{body}");
    assert!(body.contains("mxgate_inbound_recipients_total{result=\"rejected\""), "{body}");
    assert!(body.contains("mxgate_delivery_attempts_total{result=\"sent\",provider=\"http\"} 1"), "{body}");
    assert!(body.contains("mxgate_store_commits_total"), "{body}");
    assert!(body.contains("# TYPE mxgate_delivery_duration_seconds histogram"), "{body}");
    srv.shutdown().await;
}
