//! OAuth2 smart hosts (issue 17 item 5): `auth = "xoauth2"` end to end. A real token
//! endpoint over HTTPS with a test CA and a real SMTP smart host that offers AUTH XOAUTH2
//! after STARTTLS ([`rig`]); mail submitted by the ERP is relayed with the token the
//! endpoint issued, the token is cached and refreshed, a refused one replaced once, a
//! failing endpoint defers with its reason, and `mxgate test-relay` shows every step.

mod common;
#[path = "xoauth2/rig.rs"]
mod rig;

use std::time::Duration;

use common::messages::raw;
use common::sink::{Sink, SinkOptions, SinkTls, refused_port};
use common::submit::{submit, user_toml};
use common::test_ca::TestCa;
use common::{Erp, Listener, TestServer, eventually};
use mxgate::queue::{QueuedMessage, RcptState};
use rig::Rig;

const MAILBOX: &str = "erp@tenant.test";
const SENDER: &str = "odoo@example.test";

/// An `xoauth2` smart host `name` at `port`, its token from `token_url`, plus `extra` keys.
fn oauth_host(name: &str, port: u16, token_url: &str, ca: &TestCa, extra: &str) -> String {
    format!(
        r#"[[relay.smarthosts]]
name = "{name}"
host = "127.0.0.1"
port = {port}
security = "starttls"
tls_verify = false
priority = 10
auth = "xoauth2"
username = "{MAILBOX}"
token_url = "{token_url}"
token_ca_file = "{}"
client_id = "mxgate-app"
{extra}
"#,
        ca.pem_path.display()
    )
}

/// Submission, no connection kept idle (each message logs in anew, so the token cache is
/// what saves the fetches), and `hosts`.
fn config(hosts: &str) -> String {
    format!(
        "{}[relay]\nconnection_idle = \"0s\"\n{hosts}",
        user_toml(&["example.test"])
    )
}

/// The token endpoint and the smart host of `rig`, certificates from one test CA.
async fn serve(rig: &Rig, dir: &std::path::Path) -> (TestCa, String, u16) {
    let ca = TestCa::new(dir, "oauth");
    let url = rig.serve_endpoint(ca.acceptor()).await;
    let smtp = rig.serve_smtp(ca.acceptor(), MAILBOX).await;
    (ca, url, smtp.port())
}

async fn send(srv: &TestServer, to: &[&str], subject: &str) {
    submit(
        srv.addr(Listener::Submission),
        SENDER,
        to,
        &raw(SENDER, to[0], subject),
    )
    .await
    .expect("submitted");
}

async fn wait_received(rig: &Rig, n: usize) -> Vec<(String, String)> {
    eventually(20, &format!("{n} message(s) at the smart host"), || async {
        let r = rig.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

/// The message to `to`, once its recipient is in `state`.
async fn wait_state(srv: &TestServer, to: &str, state: RcptState) -> QueuedMessage {
    let queue = srv.running().queue.clone();
    eventually(20, &format!("{to} in state {state:?}"), || async {
        queue.list(None, 1000).into_iter().find(|m| {
            m.recipients
                .iter()
                .any(|r| r.address == to && r.state == state)
        })
    })
    .await
}

fn reply_of(m: &QueuedMessage, to: &str) -> String {
    m.recipients
        .iter()
        .find(|r| r.address == to)
        .and_then(|r| r.last_reply.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn concurrent_deliveries_and_later_messages_share_one_client_credentials_token() {
    let rig = Rig::new(3600);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, url, port) = serve(&rig, dir.path()).await;
    let host = oauth_host(
        "o365",
        port,
        &url,
        &ca,
        "client_secret = \"app s3cret&=\"\nscope = \"https://outlook.office365.com/.default\"",
    );
    let srv = TestServer::start(&config(&host)).await;
    // Four recipients: four deliveries at once, all wanting a token from an empty cache.
    let first = [
        "a@remote.test",
        "b@remote.test",
        "c@remote.test",
        "d@remote.test",
    ];
    send(&srv, &first, "burst").await;
    wait_received(&rig, 4).await;
    send(&srv, &["e@remote.test"], "later").await;
    let got = wait_received(&rig, 5).await;

    let requests = rig.requests();
    assert_eq!(
        requests.len(),
        1,
        "one token fetch for 5 messages: {requests:?}"
    );
    let form = &requests[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "mxgate-app");
    assert_eq!(form["client_secret"], "app s3cret&=");
    assert_eq!(form["scope"], "https://outlook.office365.com/.default");
    assert!(!form.contains_key("refresh_token"), "{form:?}");
    // Every session logged in with the exact XOAUTH2 string and the issued token.
    let auths = rig.auth_strings();
    assert!(auths.len() >= 2, "sessions opened anew: {auths:?}");
    for a in &auths {
        assert_eq!(a, &format!("user={MAILBOX}\x01auth=Bearer tok-1\x01\x01"));
    }
    assert!(got.iter().all(|(token, _)| token == "tok-1"), "{got:?}");
    let m = wait_state(&srv, "e@remote.test", RcptState::Sent).await;
    assert!(
        reply_of(&m, "e@remote.test").contains("smarthost o365"),
        "{m:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_with_the_rotated_refresh_token() {
    let rig = Rig::new(600);
    rig.rotate_refresh_tokens();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, url, port) = serve(&rig, dir.path()).await;
    let host = oauth_host(
        "gmail",
        port,
        &url,
        &ca,
        "client_secret = \"gsecret\"\nrefresh_token = \"1//configured\"",
    );
    let srv = TestServer::start(&config(&host)).await;
    send(&srv, &["one@remote.test"], "one").await;
    wait_received(&rig, 1).await;
    send(&srv, &["two@remote.test"], "two").await;
    wait_received(&rig, 2).await;
    assert_eq!(rig.requests().len(), 1, "still good: cached");
    // Past 540 s of a 600 s token (its last minute): the next delivery fetches anew.
    srv.running().clock.advance(Duration::from_secs(545));
    send(&srv, &["three@remote.test"], "three").await;
    let got = wait_received(&rig, 3).await;

    let requests = rig.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["grant_type"], "refresh_token");
    assert_eq!(requests[0]["refresh_token"], "1//configured");
    assert_eq!(requests[0]["client_secret"], "gsecret");
    // The endpoint rotated the refresh token with its first answer: the second uses it.
    assert_eq!(requests[1]["refresh_token"], "r-1");
    let tokens: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens, ["tok-1", "tok-1", "tok-2"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_auth_retried_once_with_a_fresh_one() {
    let rig = Rig::new(3600);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, url, port) = serve(&rig, dir.path()).await;
    let host = oauth_host("o365", port, &url, &ca, "client_secret = \"s\"");
    let srv = TestServer::start(&config(&host)).await;
    send(&srv, &["one@remote.test"], "one").await;
    wait_received(&rig, 1).await;
    // The host stops taking tok-1 (revoked) though it has not expired by its lifetime.
    rig.revoke_all();
    send(&srv, &["two@remote.test"], "two").await;
    let got = wait_received(&rig, 2).await;

    assert_eq!(got[1].0, "tok-2", "delivered with the fresh token");
    assert_eq!(
        rig.requests().len(),
        2,
        "one fetch to replace the refused token"
    );
    let bearer = |t: &str| format!("user={MAILBOX}\x01auth=Bearer {t}\x01\x01");
    assert_eq!(
        rig.auth_strings(),
        [bearer("tok-1"), bearer("tok-1"), bearer("tok-2")],
        "refused once, then the fresh token on the same session"
    );
    assert_eq!(rig.connections(), 2, "the retry needs no new connection");

    // A host that refuses every token: one retry, then the recipient is deferred.
    rig.refuse_all_tokens();
    let before = rig.requests().len();
    send(&srv, &["three@remote.test"], "three").await;
    let m = wait_state(&srv, "three@remote.test", RcptState::Deferred).await;
    let reply = reply_of(&m, "three@remote.test");
    assert!(reply.contains("refused twice"), "{reply}");
    assert!(reply.contains("535 5.7.8"), "{reply}");
    assert!(reply.contains("XOAUTH2 error status 401"), "{reply}");
    assert!(
        rig.requests().len() > before,
        "a fresh token was fetched for the retry"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_failing_token_endpoint_defers_with_its_reason_and_the_next_host_takes_the_mail() {
    let rig = Rig::new(3600);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, url, port) = serve(&rig, dir.path()).await;
    rig.refuse(401);
    let down = format!("https://127.0.0.1:{}/token", refused_port().await);
    let hosts = format!(
        "{}{}",
        oauth_host("refusing", port, &url, &ca, "client_secret = \"old\""),
        oauth_host("down", port, &down, &ca, "client_secret = \"s\"")
            .replace("priority = 10", "priority = 20"),
    );
    let srv = TestServer::start(&config(&hosts)).await;
    send(&srv, &["one@remote.test"], "one").await;
    let m = wait_state(&srv, "one@remote.test", RcptState::Deferred).await;
    let reply = reply_of(&m, "one@remote.test");
    assert!(
        reply.contains("no OAuth2 access token")
            && reply.contains(&url)
            && reply.contains("HTTP 401 invalid_client (client secret expired)")
            && reply.contains("[smarthost refusing]"),
        "{reply}"
    );
    assert!(
        reply.contains(&down) && reply.contains("[smarthost down]"),
        "{reply}"
    );
    assert_eq!(rig.connections(), 0, "no SMTP session without a token");
    srv.shutdown().await;

    // A working host after the failing one takes the mail (smart-host fallback).
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let hosts = format!(
        "{}[[relay.smarthosts]]\nname = \"backup\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\npriority = 20\n",
        oauth_host("down", port, &down, &ca, "client_secret = \"s\""),
        sink.addr.port()
    );
    let srv = TestServer::start(&config(&hosts)).await;
    send(&srv, &["two@remote.test"], "two").await;
    let m = wait_state(&srv, "two@remote.test", RcptState::Sent).await;
    assert!(reply_of(&m, "two@remote.test").contains("[smarthost backup]"));
    srv.shutdown().await;
}

#[tokio::test]
async fn test_relay_shows_the_token_fetch_and_each_smtp_step_but_never_the_token() {
    let rig = Rig::new(3599);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, url, port) = serve(&rig, dir.path()).await;
    let hosts = format!(
        "{}{}",
        oauth_host("o365", port, &url, &ca, "client_secret = \"s\""),
        oauth_host("untrusted", port, &url, &ca, "client_secret = \"s\"").replace(
            &format!("token_ca_file = \"{}\"\n", ca.pem_path.display()),
            ""
        ),
    );
    let path = dir.path().join("mxgate.toml");
    let erp = Erp::reserve();
    std::fs::write(&path, common::base_toml(dir.path(), &erp.url(), &hosts)).expect("write");
    let run = move |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
            .args(["test-relay", name, "--config"])
            .arg(&path)
            .output()
            .expect("run mxgate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let ((ok_code, ok), (bad_code, bad)) =
        tokio::task::spawn_blocking(move || (run("o365"), run("untrusted")))
            .await
            .expect("join");

    assert_eq!(ok_code, Some(0), "{ok}");
    let lines: Vec<&str> = ok.lines().collect();
    assert!(
        lines[0].starts_with("OK smarthost o365") && lines[0].contains("AUTH XOAUTH2 ok"),
        "{ok}"
    );
    let expected = [
        format!("  token: POST {url} (client_credentials grant) -> HTTP 200, expires in "),
        format!("  connect: 127.0.0.1:{port} from 127.0.0.1"),
        "  greeting: 220 oauth.sink ESMTP".to_string(),
        "  EHLO mx.example.test: 250 oauth.sink (STARTTLS, PIPELINING)".to_string(),
        "  STARTTLS: ok (certificate not verified: tls_verify = false)".to_string(),
        "  EHLO mx.example.test: 250 oauth.sink (PIPELINING, AUTH XOAUTH2 LOGIN)".to_string(),
        format!("  AUTH XOAUTH2 as {MAILBOX}: 235 2.7.0 Accepted"),
    ];
    assert_eq!(lines.len(), expected.len() + 1, "{ok}");
    for (line, want) in lines[1..].iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} should start with {want:?}\n{ok}"
        );
    }
    assert!(!ok.contains("tok-1"), "the token is never printed: {ok}");

    // The endpoint's certificate is from a CA this host does not trust.
    assert_eq!(bad_code, Some(1), "{bad}");
    assert!(
        bad.starts_with("FAIL 127.0.0.1: no OAuth2 access token") && bad.contains("certificate"),
        "{bad}"
    );
    assert!(
        bad.contains("  token: client_credentials grant failed: "),
        "{bad}"
    );
    assert!(
        !bad.contains("connect:"),
        "nothing after the token step: {bad}"
    );
    assert_eq!(
        rig.requests().len(),
        1,
        "the untrusted endpoint got no request"
    );
}
