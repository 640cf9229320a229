//! Every inbound routing branch, end to end: SMTP in on the real server, out to the ERP
//! (a real HTTP receiver), a Maildir, or nowhere, exactly as SPEC "Inbound routing" orders.

mod common;

use common::{Listener, TestServer, eventually, message};

#[tokio::test]
async fn alias_mail_reaches_the_erp_with_its_metadata_headers() {
    let srv = TestServer::start("").await;
    let body = message("alias", "hello sales");
    srv.send_inbound("alice@client.test", &["sales@example.test"], &body)
        .await
        .expect(250, "2.0.0");
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert_eq!(push.path, "/mxgate/inbound");
    assert_eq!(push.header("content-type"), Some("message/rfc822"));
    assert_eq!(push.header("x-mxgate-alias"), Some("sales@example.test"));
    assert_eq!(push.header("x-mxgate-route"), Some("crm"));
    assert_eq!(
        push.header("x-mxgate-envelope-from"),
        Some("alice@client.test")
    );
    assert_eq!(
        push.header("x-mxgate-envelope-to"),
        Some("sales@example.test")
    );
    let raw = String::from_utf8(push.body).expect("utf8");
    // Our verdict and Authentication-Results on top (tests/auth.rs), then our Received.
    let received = raw.find("\r\nReceived: ").map_or("", |i| &raw[i + 2..]);
    assert!(
        raw.starts_with("X-Mxgate-Auth: ") && received.starts_with("Received: from client.test"),
        "auth fields, then Received first: {raw}"
    );
    assert!(raw.ends_with(&body), "original message kept byte for byte");
    srv.shutdown().await;
}

#[tokio::test]
async fn reply_token_reaches_the_thread_route_with_the_token() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["reply+Tok3n-42@example.test"],
        &message("re", "thanks"),
    )
    .await
    .expect_code(250);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert_eq!(push.path, "/mxgate/threads");
    assert_eq!(push.header("x-mxgate-thread"), Some("Tok3n-42"));
    assert_eq!(push.header("x-mxgate-route"), Some("threads"));
    srv.shutdown().await;
}

#[tokio::test]
async fn alias_with_detail_reaches_the_alias_route() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales+q3@example.test"],
        &message("detail", "x"),
    )
    .await
    .expect_code(250);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert_eq!(push.header("x-mxgate-alias"), Some("sales@example.test"));
    assert_eq!(
        push.header("x-mxgate-envelope-to"),
        Some("sales+q3@example.test")
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn bounce_token_is_accepted_from_the_null_sender_and_stored_for_bounce_processing() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mta.client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd("RCPT TO:<bounce+abc123@example.test>")
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let reply = c.send_data(&message("dsn", "delivery failed")).await;
    reply.expect_code(250);
    // Stored (the bounce intake then reads and marks it processed; it may already have).
    let q = srv.running().queue.clone();
    let stored = q
        .list(None, 10)
        .into_iter()
        .filter(|m| {
            m.recipients
                .iter()
                .any(|r| r.address == "bounce+abc123@example.test")
        })
        .count();
    assert_eq!(stored, 1, "the DSN is in the store");
    eventually(10, "bounce processed by the intake", || {
        let q = q.clone();
        async move { q.pending_bounces().is_empty().then_some(()) }
    })
    .await;
    assert!(
        srv.erp.pushes().is_empty(),
        "bounces never go to the ERP route"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn catchall_takes_unknown_local_parts_and_without_it_they_are_unknown_users() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    c.cmd("RCPT TO:<nobody@example.test>")
        .await
        .expect(550, "5.1.1");
    srv.shutdown().await;

    let srv = TestServer::start("[[domains]]\nname = \"catch.test\"\ncatchall = \"files\"\n").await;
    srv.send_inbound(
        "alice@client.test",
        &["anyone@catch.test"],
        &message("catch", "x"),
    )
    .await
    .expect_code(250);
    let dir = srv.dir.path().join("maildir/new");
    let files = eventually(10, "maildir file", || {
        let dir = dir.clone();
        async move {
            let v: Vec<_> = std::fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .collect();
            (!v.is_empty()).then_some(v)
        }
    })
    .await;
    let raw = std::fs::read_to_string(files[0].path()).expect("read maildir file");
    assert!(raw.contains("Subject: catch"));
    srv.shutdown().await;
}

#[tokio::test]
async fn reject_route_refuses_at_rcpt_with_its_message() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    let r = c.cmd("RCPT TO:<old@example.test>").await;
    r.expect(550, "5.7.1");
    assert!(r.text().contains("no longer accepts mail"), "{r}");
    srv.shutdown().await;
}

#[tokio::test]
async fn discard_route_accepts_and_delivers_nowhere() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &["null@example.test"],
        &message("void", "x"),
    )
    .await
    .expect_code(250);
    let q = srv.running().queue.clone();
    eventually(10, "discard recorded as sent", || {
        let q = q.clone();
        async move {
            let counts = q.counts();
            (counts
                .get(&mxgate::queue::RcptState::Sent)
                .copied()
                .unwrap_or(0)
                == 1)
                .then_some(())
        }
    })
    .await;
    assert!(srv.erp.pushes().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn one_message_to_several_routes_reaches_each() {
    let srv = TestServer::start("").await;
    srv.send_inbound(
        "alice@client.test",
        &[
            "sales@example.test",
            "reply+T1@example.test",
            "files@example.test",
        ],
        &message("multi", "x"),
    )
    .await
    .expect_code(250);
    let pushes = eventually(10, "two ERP pushes", || async {
        let p = srv.erp.pushes();
        (p.len() == 2).then_some(p)
    })
    .await;
    let mut paths: Vec<_> = pushes.iter().map(|p| p.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/mxgate/inbound", "/mxgate/threads"]);
    let dir = srv.dir.path().join("maildir/new");
    eventually(10, "maildir copy", || {
        let dir = dir.clone();
        async move { (std::fs::read_dir(&dir).ok()?.count() == 1).then_some(()) }
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn erp_down_at_first_then_up_gets_the_message() {
    let erp = common::Erp::reserve();
    let mut srv = TestServer::start_with_erp(erp, "").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("later", "patience"),
    )
    .await
    .expect_code(250);
    // Let a few attempts fail against the closed port, then bring the ERP up.
    let q = srv.running().queue.clone();
    eventually(10, "a failed attempt", || {
        let q = q.clone();
        async move {
            let msgs = q.list(None, 10);
            let r = msgs.first()?.recipients.first()?.clone();
            (r.attempts >= 1 && r.state == mxgate::queue::RcptState::Deferred).then_some(())
        }
    })
    .await;
    srv.erp.up().await;
    let push = eventually(15, "ERP push after it came up", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert!(String::from_utf8_lossy(&push.body).contains("patience"));
    // The push arrives before the worker records its outcome: wait for the record.
    eventually(5, "state sent after a retry", || {
        let q = q.clone();
        async move {
            let r = q.list(None, 10)[0].recipients[0].clone();
            (r.state == mxgate::queue::RcptState::Sent && r.attempts >= 2).then_some(())
        }
    })
    .await;
    srv.restart().await;
    srv.shutdown().await;
}
