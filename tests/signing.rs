//! Signed pushes and events (issue 15 item 2): with `signing_secret`, every request carries
//! `X-Mxgate-Signature: t=..,v1=..`, and a receiver holding the secret verifies it — the Rust
//! stand-in ERP ([`Erp::verify_signatures`]) and the Python block README gives ERP
//! developers, run here as is against a real push. (`odoo` routes: `tests/odoo.rs`.)

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Erp, TestServer, eventually, message};
use mxgate::queue::RcptState;

/// An alias `signed@` whose `http` route posts to `erp` signed with `secret`.
fn signed_route(erp: &Erp, secret: &str) -> String {
    format!(
        "[[aliases]]\naddress = \"signed@example.test\"\nroute = \"signed\"\n\
         [routes.signed]\nkind = \"http\"\nurl = \"{}/in\"\nsigning_secret = \"{secret}\"\n",
        erp.url()
    )
}

async fn send_signed(srv: &TestServer, subject: &str) {
    srv.send_inbound(
        "alice@client.test",
        &["signed@example.test"],
        &message(subject, "signed body"),
    )
    .await
    .expect_code(250);
}

/// The README's ```python block that defines `mxgate_signature_ok`.
fn readme_python() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme
        .find("```python\nimport hashlib, hmac, time\ndef mxgate_signature_ok")
        .expect("README has the signature check");
    let code = &readme[start + "```python\n".len()..];
    code[..code.find("```").expect("block end")].to_string()
}

/// Runs README's check in python3 on (`secret`, `header`, `body`).
fn python_says(secret: &str, header: &str, body: &[u8]) -> bool {
    let script = format!(
        "{}\nimport sys\nprint(mxgate_signature_ok(sys.argv[1].encode(), sys.argv[2], sys.stdin.buffer.read()))\n",
        readme_python()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script, secret, header])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("body");
    let out = child.wait_with_output().expect("python3 output");
    assert!(out.status.success(), "README's Python failed");
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("README's check printed {other:?}"),
    }
}

#[tokio::test]
async fn http_route_pushes_are_signed_and_the_erp_verifies_them() {
    let erp = Erp::start().await;
    erp.verify_signatures("whsec_route");
    let srv = TestServer::start(&signed_route(&erp, "whsec_route")).await;
    send_signed(&srv, "signed-ok").await;
    let push = eventually(10, "a verified push", || async {
        erp.pushes().into_iter().find(|p| p.path == "/in")
    })
    .await;
    assert_eq!(erp.bad_signatures(), 0);
    let header = push.header("x-mxgate-signature").expect("signed");
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    // README's Python accepts it, and refuses a changed body or another secret.
    assert!(python_says("whsec_route", header, &push.body));
    let mut tampered = push.body.clone();
    tampered.extend_from_slice(b"x");
    assert!(!python_says("whsec_route", header, &tampered));
    assert!(!python_says("another", header, &push.body));
    srv.shutdown().await;
}

#[test]
fn readmes_check_refuses_a_signature_older_than_five_minutes() {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 301;
    let secret = mxgate::config::Secret::new("whsec");
    let old = mxgate::http_client::signature(&secret, t, b"body").expect("signed");
    let fresh = mxgate::http_client::signature(&secret, t + 300, b"body").expect("signed");
    assert!(!python_says("whsec", old.to_str().expect("ascii"), b"body"));
    assert!(python_says(
        "whsec",
        fresh.to_str().expect("ascii"),
        b"body"
    ));
}

#[tokio::test]
async fn a_push_signed_with_another_secret_is_refused_by_the_erp() {
    let erp = Erp::start().await;
    erp.verify_signatures("the-erps-secret");
    let srv = TestServer::start(&signed_route(&erp, "a-stale-secret")).await;
    send_signed(&srv, "signed-wrong").await;
    let r = eventually(10, "the refused attempt recorded", || async {
        let msgs = srv.running().queue.list(None, 10);
        let r = msgs.first()?.recipients.first()?.clone();
        (r.attempts >= 1).then_some(r)
    })
    .await;
    assert_eq!(r.state, RcptState::Bounced, "{r:?}");
    assert!(r.last_reply.unwrap_or_default().contains("401"));
    assert_eq!(erp.bad_signatures(), 1);
    assert!(erp.pushes().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn events_are_signed_with_the_events_secret() {
    let receiver = Erp::start().await;
    receiver.verify_signatures("whsec_events");
    let extra = "[events]\nurl = \"URL/events\"\ninbound = true\nretry_max = \"1s\"\nsigning_secret = \"whsec_events\"\n"
        .replace("URL", &receiver.url());
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("ev-signed", "x"),
    )
    .await
    .expect_code(250);
    let push = eventually(20, "a verified event", || async {
        receiver.pushes().into_iter().find(|p| p.path == "/events")
    })
    .await;
    assert_eq!(receiver.bad_signatures(), 0);
    let header = push.header("x-mxgate-signature").expect("signed");
    assert!(python_says("whsec_events", header, &push.body));
    // The unsigned route of the base config sends no signature header.
    let route_push = srv.erp.pushes().into_iter().next().expect("route push");
    assert!(route_push.header("x-mxgate-signature").is_none());
    srv.shutdown().await;
}
