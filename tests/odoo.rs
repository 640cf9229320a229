//! `odoo` routes against a real XML-RPC server, the Odoo stand-in of
//! [`common::fake_odoo`] (Python's own `xmlrpc.server`).

mod common;

use std::path::Path;

use common::fake_odoo::{FakeOdoo, Options};
use common::test_ca::TestCa;
use common::{TestServer, eventually, message};
use mxgate::queue::RcptState;

fn route_toml(odoo: &FakeOdoo, auth: &str, model: &str) -> String {
    format!(
        r#"
[[aliases]]
address = "leads@example.test"
route = "odoo"
[routes.odoo]
kind = "odoo"
url = "{}"
database = "prod"
{auth}
password = "s3cret"
model = "{model}"
timeout = "5s"
"#,
        odoo.url()
    )
}

async fn final_state(srv: &TestServer) -> Option<(RcptState, String)> {
    let msgs = srv.running().queue.list(None, 10);
    let r = msgs.first()?.recipients.first()?.clone();
    (!r.state.is_pending() || r.attempts > 0)
        .then(|| (r.state, r.last_reply.clone().unwrap_or_default()))
}

#[tokio::test]
async fn odoo_route_calls_message_process_with_db_uid_password_model_and_the_raw_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(dir.path(), Options::default());
    let srv = TestServer::start(&route_toml(&odoo, "uid = 2", "crm.lead")).await;
    let body = message("odoo-lead", "Please call me back about the quote.");
    srv.send_inbound("alice@client.test", &["leads@example.test"], &body)
        .await
        .expect_code(250);

    let calls = eventually(10, "execute_kw reaches Odoo", || async {
        let c = odoo.calls();
        (!c.is_empty()).then_some(c)
    })
    .await;
    let args = &calls[0]["args"];
    assert_eq!(calls[0]["method"], "execute_kw");
    assert_eq!(args[0], "prod");
    assert_eq!(args[1], 2);
    assert_eq!(args[2], "s3cret");
    assert_eq!(args[3], "mail.thread");
    assert_eq!(args[4], "message_process");
    assert_eq!(args[5][0], "crm.lead");
    let raw = args[5][1]["binary"]
        .as_str()
        .expect("raw message as Binary");
    assert!(raw.contains("Subject: odoo-lead\r\n"), "{raw}");
    assert!(raw.contains("Please call me back about the quote."));
    assert!(raw.contains("Authentication-Results:") || raw.contains("Received:"));

    let (state, reply) = eventually(10, "recipient sent", || final_state(&srv)).await;
    assert_eq!(state, RcptState::Sent);
    assert_eq!(reply, "XML-RPC message_process: 42");
    srv.shutdown().await;
}

#[tokio::test]
async fn odoo_login_is_resolved_once_with_authenticate_and_an_empty_model_is_false() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(dir.path(), Options::default());
    let srv = TestServer::start(&route_toml(&odoo, "user = \"admin\"", "")).await;
    for i in 0..2 {
        srv.send_inbound(
            "alice@client.test",
            &["leads@example.test"],
            &message(&format!("login-{i}"), "hello"),
        )
        .await
        .expect_code(250);
    }
    let calls = eventually(10, "two messages processed", || async {
        let c = odoo.calls();
        (c.iter().filter(|c| c["method"] == "execute_kw").count() == 2).then_some(c)
    })
    .await;
    let logins: Vec<_> = calls
        .iter()
        .filter(|c| c["method"] == "authenticate")
        .collect();
    assert_eq!(logins.len(), 1, "one login for the route: {calls:?}");
    assert_eq!(logins[0]["args"][0], "prod");
    assert_eq!(logins[0]["args"][1], "admin");
    for c in calls.iter().filter(|c| c["method"] == "execute_kw") {
        assert_eq!(c["args"][1], 7, "uid from authenticate");
        assert_eq!(c["args"][5][0], false, "empty model is sent as False");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn odoo_fault_defers_with_odoos_words_and_the_retry_delivers() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(
        dir.path(),
        Options {
            faults: 2,
            ..Options::default()
        },
    );
    let srv = TestServer::start(&route_toml(&odoo, "uid = 2", "")).await;
    srv.send_inbound(
        "alice@client.test",
        &["leads@example.test"],
        &message("odoo-fault", "retry me"),
    )
    .await
    .expect_code(250);

    let deferred = eventually(10, "first attempt deferred", || async {
        let msgs = srv.running().queue.list(None, 10);
        let r = msgs.first()?.recipients.first()?.clone();
        (r.attempts >= 1).then_some(r)
    })
    .await;
    assert!(
        deferred
            .last_reply
            .as_deref()
            .unwrap_or("")
            .contains("No possible route found"),
        "{deferred:?}"
    );
    let (state, _) = eventually(20, "delivered after the faults", || async {
        final_state(&srv)
            .await
            .filter(|(s, _)| *s == RcptState::Sent)
    })
    .await;
    assert_eq!(state, RcptState::Sent);
    let n = odoo
        .calls()
        .iter()
        .filter(|c| c["method"] == "execute_kw")
        .count();
    assert_eq!(n, 3, "two faults, then success");
    srv.shutdown().await;
}

#[tokio::test]
async fn odoo_over_https_with_a_private_ca_gets_the_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new(dir.path(), "odoo");
    let odoo = FakeOdoo::start(
        dir.path(),
        Options {
            tls: Some(&ca),
            ..Options::default()
        },
    );
    let extra = format!(
        "{}ca_file = \"{}\"\n",
        route_toml(&odoo, "user = \"admin\"", "crm.lead"),
        ca.pem_path.display()
    );
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["leads@example.test"],
        &message("odoo-https", "over TLS"),
    )
    .await
    .expect_code(250);
    let (state, reply) = eventually(10, "recipient final", || final_state(&srv)).await;
    assert_eq!(
        (state, reply.as_str()),
        (RcptState::Sent, "XML-RPC message_process: 42")
    );
    let methods: Vec<_> = odoo.calls().iter().map(|c| c["method"].clone()).collect();
    assert_eq!(
        methods,
        ["authenticate", "execute_kw"],
        "login and push, both over TLS"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn odoo_calls_are_signed_and_the_stand_in_verifies_each() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(
        dir.path(),
        Options {
            secret: Some("whsec_odoo"),
            ..Options::default()
        },
    );
    let extra = format!(
        "{}signing_secret = \"whsec_odoo\"\n",
        route_toml(&odoo, "user = \"admin\"", "")
    );
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["leads@example.test"],
        &message("odoo-signed", "x"),
    )
    .await
    .expect_code(250);
    let (state, _) = eventually(10, "recipient final", || final_state(&srv)).await;
    assert_eq!(state, RcptState::Sent);
    let calls = odoo.calls();
    assert_eq!(calls.len(), 2, "authenticate and execute_kw: {calls:?}");
    for c in &calls {
        assert_eq!(c["signature_ok"], true, "{c}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn odoo_down_defers_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tmp");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let extra = format!(
        r#"
[[aliases]]
address = "leads@example.test"
route = "odoo"
[routes.odoo]
kind = "odoo"
url = "http://127.0.0.1:{port}"
database = "prod"
uid = 2
password = "x"
"#
    );
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["leads@example.test"],
        &message("odoo-down", "x"),
    )
    .await
    .expect_code(250);
    let r = eventually(10, "deferred while Odoo is down", || async {
        let msgs = srv.running().queue.list(None, 10);
        let r = msgs.first()?.recipients.first()?.clone();
        (r.state == RcptState::Deferred).then_some(r)
    })
    .await;
    assert!(r.last_reply.unwrap_or_default().contains("onnect"));
    drop(dir);
    srv.shutdown().await;
}

#[test]
fn an_odoo_route_without_uid_or_user_is_a_config_problem_with_its_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let extra = "[routes.odoo]\nkind = \"odoo\"\nurl = \"http://127.0.0.1:8069\"\ndatabase = \"prod\"\npassword = \"x\"\n";
    let toml = common::base_toml(dir.path(), "http://127.0.0.1:1", extra);
    let err = mxgate::config::Config::from_toml(&toml, Path::new("odoo.toml"))
        .expect_err("uid or user is required");
    let text = err.to_string();
    assert!(text.contains("routes.odoo.uid"), "{text}");
    assert!(text.contains("`uid` or `user`"), "{text}");
}
