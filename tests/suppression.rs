//! The suppression list end to end (issue 6 §6, issue 5 "closing the loop"): a hard bounce
//! or a complaint that comes back to `bounce+TOKEN@` suppresses the recipient its token
//! names, submission then refuses that recipient with `550 5.7.1 Recipient suppressed`
//! (also after a restart); soft bounces and forged tokens suppress nothing; operators
//! manage the list through `/api/suppressions` and `mxgate suppress`.

mod common;

use common::erp::http_request;
use common::messages::{arf, dsn, plain};
use common::{Listener, SmtpClient, TestServer, eventually, submit};
use mxgate::envelope::QueueId;
use mxgate::metrics::BOUNCES;
use mxgate::suppression::Source as SuppressionSource;
use serde_json::Value;

/// An authenticated submission session (implicit TLS) with MAIL FROM given.
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

/// Submits one message to `rcpt` and returns its queue id.
async fn submit_to(srv: &TestServer, rcpt: &str) -> QueueId {
    let mut c = submission(srv).await;
    c.cmd(&format!("RCPT TO:<{rcpt}>")).await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let body = format!(
        "From: odoo@example.test\r\nTo: {rcpt}\r\nSubject: Invoice\r\nMessage-ID: <inv-{rcpt}>\r\n\r\nInvoice attached.\r\n"
    );
    c.send_data(&body).await.expect_code(250);
    let q = srv.running().queue.clone();
    let rcpt = rcpt.to_string();
    eventually(10, "submitted message queued", || {
        let (q, rcpt) = (q.clone(), rcpt.clone());
        async move {
            q.list(None, 1000)
                .into_iter()
                .find(|m| m.recipients.iter().any(|r| r.address == rcpt))
                .map(|m| m.id)
        }
    })
    .await
}

/// Sends a report to `local@example.test` on the inbound listener and waits until the
/// intake has processed it.
async fn send_report(srv: &TestServer, local: &str, body: &str) {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd(&format!("RCPT TO:<{local}@example.test>"))
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(body).await.expect_code(250);
    let q = srv.running().queue.clone();
    eventually(10, "report processed", || {
        let q = q.clone();
        async move { q.pending_bounces().is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_recipient_and_submission_refuses_it_even_after_a_restart() {
    let mut srv = TestServer::start(&submit::user_toml(&["example.test"])).await;
    let id = submit_to(&srv, "gone@remote.test").await;
    let token = srv.running().token_key.issue(id, 0);
    send_report(
        &srv,
        &format!("bounce+{token}"),
        &dsn(
            "mx.remote.test",
            "gone@remote.test",
            "5.1.1",
            "550 5.1.1 <gone@remote.test>: Recipient address rejected: User unknown",
        ),
    )
    .await;
    let list = srv.running().suppressions.clone();
    let entry = eventually(10, "address suppressed", || {
        let list = list.clone();
        async move { list.get("gone@remote.test").ok().flatten() }
    })
    .await;
    assert_eq!(entry.source, SuppressionSource::Bounce);
    assert_eq!(entry.reason, "Invalid address");
    assert!(
        entry.detail.as_deref().unwrap_or("").contains("5.1.1"),
        "{entry:?}"
    );
    let labels = [
        ("category", "Invalid address"),
        ("sending_domain", "example.test"),
        ("kind", "permanent"),
    ];
    assert!(srv.metric(BOUNCES, &labels).await.is_some());

    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<Gone@Remote.test>")
        .await
        .expect(550, "5.7.1 Recipient suppressed");
    c.cmd("RCPT TO:<other@remote.test>").await.expect_code(250);

    srv.restart().await;
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<gone@remote.test>")
        .await
        .expect(550, "5.7.1 Recipient suppressed");
    srv.shutdown().await;
}

#[tokio::test]
async fn soft_bounces_and_forged_tokens_suppress_nothing() {
    let srv = TestServer::start(&submit::user_toml(&["example.test"])).await;
    let id = submit_to(&srv, "full@remote.test").await;
    let token = srv.running().token_key.issue(id, 0);
    send_report(
        &srv,
        &format!("bounce+{token}"),
        &dsn(
            "mx.remote.test",
            "full@remote.test",
            "4.2.2",
            "452 4.2.2 <full@remote.test>: Mailbox full",
        ),
    )
    .await;
    send_report(
        &srv,
        "bounce+aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &dsn(
            "mx.remote.test",
            "victim@remote.test",
            "5.1.1",
            "550 5.1.1 <victim@remote.test>: User unknown",
        ),
    )
    .await;
    // Both reports were classified and counted ...
    let full = [("category", "Mailbox Full")];
    assert!(srv.metric(BOUNCES, &full).await.is_some());
    let unknown = [
        ("category", "Invalid address"),
        ("sending_domain", "unknown"),
    ];
    assert!(srv.metric(BOUNCES, &unknown).await.is_some());
    // ... and neither suppressed anyone.
    let list = srv.running().suppressions.clone();
    assert!(list.is_empty(), "{:?}", list.list(None, None, 10));
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<full@remote.test>").await.expect_code(250);
    c.cmd("RCPT TO:<victim@remote.test>").await.expect_code(250);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_bare_550_without_readable_words_is_counted_as_invalid_address_but_suppresses_nothing() {
    let srv = TestServer::start(&submit::user_toml(&["example.test"])).await;
    // The code table or a generic wording files both under Invalid address; nothing says
    // "no such user".
    for (rcpt, status, diagnostic) in [
        ("policy@remote.test", "5.7.1", "550 5.7.1"),
        ("rejected@remote.test", "5.0.0", "550 Recipient rejected"),
    ] {
        let id = submit_to(&srv, rcpt).await;
        let token = srv.running().token_key.issue(id, 0);
        let report = dsn("mx.remote.test", rcpt, status, diagnostic);
        send_report(&srv, &format!("bounce+{token}"), &report).await;
    }
    let labels = [("category", "Invalid address"), ("kind", "permanent")];
    let counted = srv.metric(BOUNCES, &labels).await;
    assert_eq!(counted, Some(2.0), "both bounces counted");
    let list = srv.running().suppressions.clone();
    assert!(list.is_empty(), "{:?}", list.list(None, None, 10));
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<policy@remote.test>").await.expect_code(250);
    c.cmd("RCPT TO:<rejected@remote.test>")
        .await
        .expect_code(250);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_complaint_suppresses_the_recipient_named_by_the_returned_return_path() {
    let srv = TestServer::start(&submit::user_toml(&["example.test"])).await;
    let id = submit_to(&srv, "grumpy@remote.test").await;
    let token = srv.running().token_key.issue(id, 0);
    // Feedback loops write to a fixed address; the token is in the returned message.
    send_report(
        &srv,
        "bounce",
        &arf(
            "grumpy@remote.test",
            &format!("bounce+{token}@example.test"),
            "complained-about@example.test",
        ),
    )
    .await;
    let list = srv.running().suppressions.clone();
    let entry = eventually(10, "complainant suppressed", || {
        let list = list.clone();
        async move { list.get("grumpy@remote.test").ok().flatten() }
    })
    .await;
    assert_eq!(entry.source, SuppressionSource::Complaint);
    assert_eq!(entry.reason, "complaint: abuse");
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<grumpy@remote.test>")
        .await
        .expect(550, "5.7.1 Recipient suppressed");
    srv.shutdown().await;
}

#[tokio::test]
async fn the_api_adds_lists_shows_and_removes_suppressions() {
    let srv = TestServer::start(&submit::user_toml(&["example.test"])).await;
    let base = format!("{}/api/suppressions", srv.admin_url());
    let (status, body) = http_request(
        "POST",
        &base,
        r#"{"address":"Ops+Test@Remote.test","reason":"asked to stop"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["address"], "ops+test@remote.test");
    assert_eq!(v["source"], "manual");
    let (status, _) = http_request("POST", &base, r#"{"address":"not-an-address"}"#).await;
    assert_eq!(status, 400);
    let (status, _) = http_request("POST", &base, r#"{"reason":"no address"}"#).await;
    assert_eq!(status, 400);

    let (status, body) = srv.admin_get("/api/suppressions").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["total"], 1);
    assert_eq!(v["suppressions"][0]["reason"], "asked to stop");
    let (status, _) = srv
        .admin_get("/api/suppressions/ops%2Btest@remote.test")
        .await;
    assert_eq!(status, 200);
    let (status, _) = srv.admin_get("/api/suppressions?source=nonsense").await;
    assert_eq!(status, 400);

    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<ops+test@remote.test>")
        .await
        .expect(550, "5.7.1 Recipient suppressed");
    drop(c);

    let (status, body) = http_request(
        "DELETE",
        &format!("{base}?address=ops%2Btest%40remote.test"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_request("DELETE", &base, r#"{"address":"ops+test@remote.test"}"#).await;
    assert_eq!(status, 404);
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<ops+test@remote.test>")
        .await
        .expect_code(250);
    srv.shutdown().await;
}

fn cli(srv: &TestServer, args: &[&str]) -> (bool, String, String) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .current_dir(cwd.path())
        .arg("suppress")
        .arg("--admin")
        .arg(srv.admin_url())
        .args(args)
        .output()
        .expect("mxgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn suppress_cli_adds_lists_and_removes_through_the_admin_api() {
    let srv = TestServer::start("").await;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        cli(
            &srv,
            &["add", "a+b@remote.test", "--reason", "customer request"],
        )
    });
    assert!(ok, "{out}{err}");
    assert!(out.contains("a+b@remote.test suppressed"), "{out}");
    assert!(srv.running().suppressions.is_suppressed("a+b@remote.test"));

    let (ok, out, err) = tokio::task::block_in_place(|| cli(&srv, &["list"]));
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("a+b@remote.test"))
        .unwrap_or_else(|| panic!("no row in {out}"));
    assert!(
        row.contains("manual") && row.contains("customer request"),
        "{row}"
    );
    let (ok, out, _) = tokio::task::block_in_place(|| cli(&srv, &["list", "--json"]));
    assert!(ok);
    let v: Value = serde_json::from_str(out.lines().next().unwrap_or("")).expect("json line");
    assert_eq!(v["address"], "a+b@remote.test");

    let (ok, out, err) = tokio::task::block_in_place(|| cli(&srv, &["remove", "a+b@remote.test"]));
    assert!(ok, "{out}{err}");
    assert!(!srv.running().suppressions.is_suppressed("a+b@remote.test"));
    let (ok, _, err) = tokio::task::block_in_place(|| cli(&srv, &["remove", "a+b@remote.test"]));
    assert!(!ok);
    assert!(err.contains("not suppressed"), "{err}");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_synchronous_5xx_user_unknown_from_the_smart_host_suppresses_the_recipient() {
    use common::sink::{Sink, SinkOptions, SinkTls};
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&[
        "550 5.1.1 <dead@remote.test>: Recipient address rejected: User unknown",
        "452 4.2.2 <full@remote.test>: Mailbox full",
    ]);
    let extra = format!(
        "{}[[relay.smarthosts]]\nname = \"only\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 10\nsecurity = \"none\"\n",
        submit::user_toml(&["example.test"]),
        sink.addr.port()
    );
    let srv = TestServer::start(&extra).await;
    submit_to(&srv, "dead@remote.test").await;
    let list = srv.running().suppressions.clone();
    let entry = eventually(20, "address suppressed after the 550", || {
        let list = list.clone();
        async move { list.get("dead@remote.test").ok().flatten() }
    })
    .await;
    assert_eq!(entry.source, SuppressionSource::Bounce);
    assert_eq!(entry.reason, "Invalid address");
    let mut c = submission(&srv).await;
    c.cmd("RCPT TO:<dead@remote.test>")
        .await
        .expect(550, "5.7.1 Recipient suppressed");
    drop(c);
    // A transient refusal (full mailbox) is retried, not suppressed.
    submit_to(&srv, "full@remote.test").await;
    let q = srv.running().queue.clone();
    eventually(20, "the 452 recorded", || {
        let q = q.clone();
        async move {
            q.list(None, 100)
                .into_iter()
                .flat_map(|m| m.recipients)
                .find(|r| r.address == "full@remote.test" && r.attempts > 0)
        }
    })
    .await;
    assert!(!list.is_suppressed("full@remote.test"));
    srv.shutdown().await;
}
