//! Closing the loop: a DSN sent to `bounce+TOKEN@` is parsed and classified, the recipient
//! TOKEN names becomes `bounced` with its category, and `mxgate_bounces_total` counts it.
//! A DSN with a forged token is still classified and counted, and changes nothing.

mod common;

use common::messages::dsn_user_unknown;
use common::{Listener, TestServer, eventually, message};
use mxgate::metrics::BOUNCES;
use mxgate::queue::RcptState;

async fn send_dsn(srv: &TestServer, token: &str, body: &str) {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd(&format!("RCPT TO:<bounce+{token}@example.test>"))
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(body).await.expect_code(250);
}

#[tokio::test]
async fn a_dsn_with_our_token_bounces_the_recipient_it_names() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("orig", "x"),
    )
    .await
    .expect_code(250);
    let q = srv.running().queue.clone();
    let id = eventually(10, "original sent", || {
        let q = q.clone();
        async move {
            let m = q.list(Some(RcptState::Sent), 10).into_iter().next()?;
            Some(m.id)
        }
    })
    .await;

    let token = srv.running().token_key.issue(id, 0);
    send_dsn(
        &srv,
        &token,
        &dsn_user_unknown("mx.remote.test", "sales@example.test"),
    )
    .await;

    let r = eventually(10, "recipient bounced", || {
        let q = q.clone();
        async move {
            let r = q.get(id)?.recipients.into_iter().next()?;
            (r.state == RcptState::Bounced).then_some(r)
        }
    })
    .await;
    assert_eq!(r.category.as_deref(), Some("Invalid address"));
    assert!(
        r.last_reply.as_deref().unwrap_or("").contains("5.1.1"),
        "{:?}",
        r.last_reply
    );
    // Counted by the report stage after the queue recorded the bounce: polled, not read once
    // (a loaded machine saw the scrape before the count).
    eventually(10, "bounce counted as Invalid address", || async {
        srv.metric(BOUNCES, &[("category", "Invalid address")])
            .await
            .map(|_| ())
    })
    .await;
    eventually(10, "DSN processed", || {
        let q = q.clone();
        async move { q.pending_bounces().is_empty().then_some(()) }
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_dsn_with_a_forged_token_is_counted_and_changes_nothing() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("orig", "x"),
    )
    .await
    .expect_code(250);
    let q = srv.running().queue.clone();
    eventually(10, "original sent", || {
        let q = q.clone();
        async move {
            q.list(Some(RcptState::Sent), 10)
                .into_iter()
                .next()
                .map(|_| ())
        }
    })
    .await;
    send_dsn(
        &srv,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &dsn_user_unknown("mx.remote.test", "sales@example.test"),
    )
    .await;
    eventually(10, "bounce counted", || async {
        srv.metric(BOUNCES, &[]).await.map(|_| ())
    })
    .await;
    assert!(
        srv.metric(BOUNCES, &[("category", "Invalid address")])
            .await
            .is_some()
    );
    let counts = q.counts();
    assert_eq!(
        counts.get(&RcptState::Bounced).copied().unwrap_or(0),
        0,
        "{counts:?}"
    );
    srv.shutdown().await;
}
