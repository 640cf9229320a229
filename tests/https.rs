//! HTTPS to the ERP (issue 15 item 1): `http` routes and `[events]` against real HTTPS
//! stand-ins whose certificates a private test CA signed ([`TestCa`]); `odoo` routes over
//! HTTPS are in `tests/odoo.rs`. A certificate mxgate must not trust defers the message with
//! rustls' reason as the last reply; `tls_verify = false` takes any certificate.

mod common;

use std::path::Path;

use common::test_ca::TestCa;
use common::{Erp, TestServer, eventually, message};
use mxgate::queue::{RcptState, Recipient};

/// An alias `secure@` whose `http` route posts to `erp` with `keys` (ca_file, tls_verify).
fn secure_route(erp: &Erp, keys: &str) -> String {
    format!(
        "[[aliases]]\naddress = \"secure@example.test\"\nroute = \"secure\"\n\
         [routes.secure]\nkind = \"http\"\nurl = \"{}/in\"\ntimeout = \"5s\"\n{keys}\n",
        erp.url()
    )
}

fn ca_key(ca: &TestCa) -> String {
    format!("ca_file = \"{}\"", ca.pem_path.display())
}

async fn send_secure(srv: &TestServer, subject: &str) {
    srv.send_inbound(
        "alice@client.test",
        &["secure@example.test"],
        &message(subject, "over https"),
    )
    .await
    .expect_code(250);
}

/// The recipient once an attempt has been recorded for it.
async fn attempted(srv: &TestServer) -> Recipient {
    eventually(10, "an attempt recorded", || async {
        let msgs = srv.running().queue.list(None, 10);
        let r = msgs.first()?.recipients.first()?.clone();
        (r.attempts >= 1).then_some(r)
    })
    .await
}

#[tokio::test]
async fn http_route_over_https_with_a_private_ca_delivers() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new(dir.path(), "erp");
    let secure = Erp::start_tls(ca.acceptor()).await;
    let srv = TestServer::start(&secure_route(&secure, &ca_key(&ca))).await;
    send_secure(&srv, "https-ok").await;
    let r = attempted(&srv).await;
    assert_eq!(r.state, RcptState::Sent, "{r:?}");
    assert_eq!(r.last_reply.as_deref(), Some("HTTP 200 OK"));
    let push = secure.pushes().into_iter().next().expect("pushed over TLS");
    assert_eq!(push.path, "/in");
    assert!(String::from_utf8_lossy(&push.body).contains("Subject: https-ok"));
    srv.shutdown().await;
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_deferred_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let trusted = TestCa::new(dir.path(), "erp");
    let rogue = TestCa::new(dir.path(), "rogue");
    let erp = Erp::start_tls(rogue.acceptor()).await;
    let srv = TestServer::start(&secure_route(&erp, &ca_key(&trusted))).await;
    send_secure(&srv, "https-rogue").await;
    let r = attempted(&srv).await;
    assert_eq!(r.state, RcptState::Deferred, "{r:?}");
    let reply = r.last_reply.unwrap_or_default();
    assert!(
        reply.contains("invalid peer certificate") && reply.contains("UnknownIssuer"),
        "the precise TLS reason: {reply}"
    );
    assert!(erp.pushes().is_empty(), "nothing reached the impostor");
    assert!(erp.handshake_failures() >= 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn tls_verify_false_takes_any_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let rogue = TestCa::new(dir.path(), "rogue");
    let erp = Erp::start_tls(rogue.acceptor()).await;
    let srv = TestServer::start(&secure_route(&erp, "tls_verify = false")).await;
    send_secure(&srv, "https-insecure").await;
    let r = attempted(&srv).await;
    assert_eq!(r.state, RcptState::Sent, "{r:?}");
    assert_eq!(erp.pushes().len(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn events_go_to_an_https_receiver_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new(dir.path(), "events");
    let receiver = Erp::start_tls(ca.acceptor()).await;
    let extra = format!(
        "[events]\nurl = \"{}/events\"\ninbound = true\nretry_max = \"1s\"\n{}\n",
        receiver.url(),
        ca_key(&ca)
    );
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("ev-https", "x"),
    )
    .await
    .expect_code(250);
    let push = eventually(20, "an event over https", || async {
        receiver.pushes().into_iter().find(|p| p.path == "/events")
    })
    .await;
    let ev: serde_json::Value = serde_json::from_slice(&push.body).expect("json");
    assert_eq!(ev["event"], "delivered");
    srv.shutdown().await;
}

#[test]
fn an_unreadable_ca_file_is_a_config_problem_at_its_key_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("empty.pem"), "no certificates here\n").expect("write");
    let extra = format!(
        "[routes.secure]\nkind = \"http\"\nurl = \"https://erp.test/in\"\nca_file = \"{0}/missing.pem\"\n\
         [events]\nurl = \"https://erp.test/events\"\nca_file = \"{0}/empty.pem\"\n",
        dir.path().display()
    );
    let toml = common::base_toml(dir.path(), "http://127.0.0.1:1", &extra);
    let err =
        mxgate::config::Config::from_toml(&toml, Path::new("https.toml")).expect_err("bad ca_file");
    let text = err.to_string();
    assert!(text.contains("routes.secure.ca_file"), "{text}");
    assert!(text.contains("missing.pem"), "{text}");
    assert!(text.contains("events.ca_file"), "{text}");
    assert!(text.contains("no CERTIFICATE"), "{text}");
    assert!(text.contains("https.toml:"), "file:line: {text}");
}
