//! Outbound relay end to end: ERP submission → queue → smart hosts or MX (real SMTP sinks
//! on loopback) → sent, deferred and retried, or bounced with a DSN back to the sender.

mod common;

use std::time::Duration;

use common::messages::raw;
use common::sink::{Sink, SinkOptions, SinkTls, refused_port};
use common::submit::{python_send, submit, user_toml};
use common::{Erp, Listener, TestServer, eventually};
use mxgate::queue::{QueuedMessage, RcptState};
use mxgate::reply;

/// A smart host entry pointing at a loopback port.
fn smarthost(name: &str, port: u16, priority: u32, extra: &str) -> String {
    format!(
        "[[relay.smarthosts]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\npriority = {priority}\nsecurity = \"none\"\n{extra}\n"
    )
}

/// The only message in the queue whose mail_from is `from`, once its first recipient is in `state`.
async fn wait_state(srv: &TestServer, from: &str, state: RcptState) -> QueuedMessage {
    let queue = srv.running().queue.clone();
    let from = from.to_string();
    eventually(
        20,
        &format!("a message from {from} in state {state:?}"),
        || {
            let q = queue.clone();
            let from = from.clone();
            async move {
                q.list(None, 1000)
                    .into_iter()
                    .find(|m| m.mail_from == from && m.recipients[0].state == state)
            }
        },
    )
    .await
}

async fn wait_received(sink: &Sink, n: usize) -> Vec<common::sink::Received> {
    eventually(20, &format!("{n} message(s) at the sink"), || async {
        let r = sink.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

#[tokio::test]
async fn odoo_style_smtplib_submission_is_relayed_with_starttls_auth_verp_and_dkim() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_path = keys.path().join("example.test.s1.key");
    let key = mxgate::auth::keys::generate_to(&key_path, mxgate::config::DkimAlgorithm::Ed25519)
        .expect("dkim key");
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::StartTls,
        auth: Some(("relayuser".into(), "relaypass".into())),
    })
    .await;
    let extra = format!(
        "{}[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"s1\"\nalgorithm = \"ed25519\"\nkey_file = \"{}\"\n{}",
        user_toml(&["example.test"]),
        key_path.display(),
        smarthost(
            "primary",
            sink.addr.port(),
            10,
            "security = \"starttls\"\nusername = \"relayuser\"\npassword = \"relaypass\"\ntls_verify = false"
        )
        .replace("security = \"none\"\n", "")
    );
    let srv = TestServer::start(&extra).await;
    srv.dns.txt("s1._domainkey.example.test", &key.dns_record());
    let sent = python_send(
        srv.addr(Listener::Submission),
        false,
        "s3cret",
        &[
            ("From", "Shop <odoo@example.test>"),
            ("To", "customer@remote.test"),
            ("Subject", "Invoice INV/2026/0042"),
        ],
        "Please find your invoice attached.",
    )
    .await;
    assert!(sent.ok, "{}", sent.output);
    let got = wait_received(&sink, 1).await;
    let m = &got[0];
    assert!(m.tls, "relayed over STARTTLS");
    assert_eq!(m.auth_user.as_deref(), Some("relayuser"));
    assert_eq!(m.rcpts, ["customer@remote.test"]);
    // VERP: bounce+TOKEN@bounce domain, TOKEN naming this message's recipient 0.
    let local = m
        .mail_from
        .strip_suffix("@example.test")
        .and_then(|l| l.strip_prefix("bounce+"))
        .unwrap_or_else(|| panic!("VERP sender expected, got {}", m.mail_from));
    let (id, idx) = srv
        .running()
        .token_key
        .verify(local)
        .expect("token verifies");
    assert_eq!(idx, 0);
    let stored = srv.running().queue.get(id).expect("message in the queue");
    assert_eq!(stored.mail_from, "odoo@example.test");
    // smtplib's EmailMessage has neither: the MSA adds them.
    assert!(m.data.contains("\r\nMessage-ID: <"), "{}", m.data);
    assert!(m.data.contains("\r\nDate: "), "{}", m.data);
    assert!(m.data.contains("Received: from "), "{}", m.data);
    // The signature verifies against the key published in DNS.
    let dns = mxgate::dns::Dns::from_config(&srv.config.dns).expect("resolver");
    let verifier = mxgate::auth::Verifier::new(&srv.config, dns, mxgate::metrics::Metrics::new());
    let from = mxgate::envelope::ReversePath::Address(
        mxgate::envelope::Address::parse("odoo@example.test").expect("address"),
    );
    let verdict = verifier
        .verify(
            "127.0.0.1".parse().expect("ip"),
            "mx.example.test",
            &from,
            m.data.as_bytes(),
        )
        .await;
    assert!(
        verdict
            .dkim
            .iter()
            .any(|d| d.result == mxgate::auth::AuthResult::Pass && d.domain == "example.test"),
        "{:?}\n{}",
        verdict.dkim,
        m.data
    );
    let done = wait_state(&srv, "odoo@example.test", RcptState::Sent).await;
    let last = done.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("250 "), "{last}");
    assert!(last.contains("smarthost primary"), "{last}");
    srv.shutdown().await;
}

#[tokio::test]
async fn primary_down_falls_back_to_the_next_smart_host_by_priority() {
    let backup = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}{}{}",
        user_toml(&["example.test"]),
        smarthost("backup", backup.addr.port(), 20, ""),
        smarthost("primary", refused_port().await, 10, "")
    );
    let srv = TestServer::start(&extra).await;
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["a@remote.test"],
        &raw("odoo@example.test", "a@remote.test", "fallback"),
    )
    .await
    .expect("submitted");
    let got = wait_received(&backup, 1).await;
    assert_eq!(got[0].rcpts, ["a@remote.test"]);
    let m = wait_state(&srv, "odoo@example.test", RcptState::Sent).await;
    assert!(
        m.recipients[0]
            .last_reply
            .as_deref()
            .is_some_and(|r| r.contains("smarthost backup")),
        "{:?}",
        m.recipients[0]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn from_filter_routes_two_sending_domains_to_two_smart_hosts() {
    let shop = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let main = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}{}{}",
        user_toml(&["example.test", "shop.test"]),
        smarthost("shop", shop.addr.port(), 10, "from_filter = \"@shop.test\""),
        smarthost(
            "main",
            main.addr.port(),
            10,
            "from_filter = \"@example.test\""
        ),
    );
    let srv = TestServer::start(&extra).await;
    let sub = srv.addr(Listener::Submission);
    submit(
        sub,
        "sales@shop.test",
        &["x@remote.test"],
        &raw("sales@shop.test", "x@remote.test", "shop"),
    )
    .await
    .expect("shop mail");
    submit(
        sub,
        "odoo@example.test",
        &["y@remote.test"],
        &raw("odoo@example.test", "y@remote.test", "main"),
    )
    .await
    .expect("main mail");
    let s = wait_received(&shop, 1).await;
    let m = wait_received(&main, 1).await;
    assert_eq!(
        (s[0].rcpts.clone(), m[0].rcpts.clone()),
        (
            vec!["x@remote.test".to_string()],
            vec!["y@remote.test".to_string()]
        )
    );
    assert_eq!(shop.received().len() + main.received().len(), 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn smart_host_4xx_is_deferred_then_delivered_on_retry() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["451 4.3.0 Try again later", "452 4.2.2 Mailbox busy"]);
    let extra = format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["later@remote.test"],
        &raw("odoo@example.test", "later@remote.test", "retry"),
    )
    .await
    .expect("submitted");
    // Backoff in the test config is 100 ms doubling: the third attempt gets through.
    let m = wait_state(&srv, "odoo@example.test", RcptState::Sent).await;
    assert_eq!(m.recipients[0].attempts, 3, "{:?}", m.recipients[0]);
    assert_eq!(sink.received().len(), 1);
    assert_eq!(sink.transactions(), 3);
    srv.shutdown().await;
}

#[tokio::test]
async fn smart_host_5xx_bounces_and_a_dsn_with_the_remote_reply_reaches_the_sender() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["550 5.1.1 <gone@remote.test>: Recipient address rejected: User unknown"]);
    let extra = format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    // The sender is an alias of the ERP: the DSN comes back there.
    submit(
        srv.addr(Listener::Submission),
        "sales@example.test",
        &["gone@remote.test"],
        &raw("sales@example.test", "gone@remote.test", "bounce"),
    )
    .await
    .expect("submitted");
    let m = wait_state(&srv, "sales@example.test", RcptState::Bounced).await;
    let r = &m.recipients[0];
    assert_eq!(r.attempts, 1, "a 5xx is not retried");
    assert!(
        r.last_reply
            .as_deref()
            .is_some_and(|l| l.starts_with("550 5.1.1")),
        "{r:?}"
    );
    assert_eq!(r.category.as_deref(), Some("Invalid address"), "{r:?}");
    let push = eventually(20, "DSN at the ERP", || async {
        srv.erp
            .pushes()
            .into_iter()
            .find(|p| String::from_utf8_lossy(&p.body).contains("multipart/report"))
    })
    .await;
    assert_eq!(push.header("x-mxgate-envelope-from"), Some(""));
    let dsn = String::from_utf8_lossy(&push.body).into_owned();
    assert!(
        dsn.contains("Final-Recipient: rfc822; gone@remote.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        dsn.contains("Recipient address rejected: User unknown"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: bounce"),
        "original headers returned: {dsn}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn all_smart_hosts_down_defers_warns_once_after_delay_warning_and_expiry_sends_a_dsn() {
    let extra = format!(
        "{}[relay]\ndelay_warning = \"10m\"\n{}{}",
        user_toml(&["example.test"]),
        smarthost("a", refused_port().await, 10, ""),
        smarthost("b", refused_port().await, 20, "")
    );
    let srv = TestServer::start(&extra).await;
    submit(
        srv.addr(Listener::Submission),
        "support@example.test",
        &["far@remote.test"],
        &raw("support@example.test", "far@remote.test", "expire"),
    )
    .await
    .expect("submitted");
    let m = wait_state(&srv, "support@example.test", RcptState::Deferred).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(
        last.contains("smarthost a") && last.contains("smarthost b"),
        "every host's error is kept: {last}"
    );
    assert!(
        srv.erp.pushes().is_empty(),
        "no warning before delay_warning"
    );
    // Past relay.delay_warning: one "delayed" DSN, the recipient is still retried.
    srv.running().clock.advance(Duration::from_secs(15 * 60));
    let warning = eventually(20, "delay warning at the ERP", || async {
        srv.erp
            .pushes()
            .into_iter()
            .find(|p| String::from_utf8_lossy(&p.body).contains("Action: delayed"))
    })
    .await;
    let text = String::from_utf8_lossy(&warning.body).into_owned();
    assert!(
        text.contains("Final-Recipient: rfc822; far@remote.test"),
        "{text}"
    );
    // Past queue.expire_after (1h in the test config).
    srv.running().clock.advance(Duration::from_secs(2 * 3600));
    wait_state(&srv, "support@example.test", RcptState::Expired).await;
    let push = eventually(20, "expiry DSN at the ERP", || async {
        srv.erp
            .pushes()
            .into_iter()
            .find(|p| String::from_utf8_lossy(&p.body).contains("Action: failed"))
    })
    .await;
    let warnings = srv
        .erp
        .pushes()
        .iter()
        .filter(|p| String::from_utf8_lossy(&p.body).contains("Action: delayed"))
        .count();
    assert_eq!(warnings, 1, "the delay warning is sent once");
    let dsn = String::from_utf8_lossy(&push.body).into_owned();
    assert!(
        dsn.contains("Final-Recipient: rfc822; far@remote.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    srv.shutdown().await;
}

#[tokio::test]
async fn direct_mx_goes_by_preference_falls_back_to_a_records_and_null_mx_bounces() {
    let mx = Sink::start(SinkOptions {
        tls: SinkTls::StartTls,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}[relay]\ndirect_mx = true\nmx_port = {}\n",
        user_toml(&["example.test"]),
        mx.addr.port()
    );
    let srv = TestServer::start(&extra).await;
    // Preference 10 has an address nobody listens on (127.0.0.2): 20 takes the mail.
    srv.dns.mx("remote.test", 20, "mx2.remote.test");
    srv.dns.mx("remote.test", 10, "mx1.remote.test");
    srv.dns
        .a("mx1.remote.test", "127.0.0.2".parse().expect("ip"));
    srv.dns
        .a("mx2.remote.test", "127.0.0.1".parse().expect("ip"));
    srv.dns.mx("nomail.test", 0, ".");
    let sub = srv.addr(Listener::Submission);
    submit(
        sub,
        "odoo@example.test",
        &["ann@remote.test"],
        &raw("odoo@example.test", "ann@remote.test", "mx"),
    )
    .await
    .expect("submitted");
    let got = wait_received(&mx, 1).await;
    assert_eq!(got[0].rcpts, ["ann@remote.test"]);
    assert!(got[0].tls, "opportunistic STARTTLS used when offered");
    submit(
        sub,
        "sales@example.test",
        &["bob@nomail.test"],
        &raw("sales@example.test", "bob@nomail.test", "nullmx"),
    )
    .await
    .expect("submitted");
    let m = wait_state(&srv, "sales@example.test", RcptState::Bounced).await;
    assert_eq!(
        m.recipients[0].last_reply.as_deref(),
        Some(reply::NULL_MX.to_string().as_str())
    );
    eventually(20, "null MX DSN at the ERP", || async {
        srv.erp.pushes().into_iter().find(|p| {
            let b = String::from_utf8_lossy(&p.body);
            b.contains("multipart/report") && b.contains("bob@nomail.test")
        })
    })
    .await;
    // No MX: the domain's own address is the implicit MX (RFC 5321 §5.1).
    srv.dns.a("plain.test", "127.0.0.1".parse().expect("ip"));
    submit(
        sub,
        "odoo@example.test",
        &["cy@plain.test"],
        &raw("odoo@example.test", "cy@plain.test", "implicit"),
    )
    .await
    .expect("submitted");
    let got = wait_received(&mx, 2).await;
    assert_eq!(got[1].rcpts, ["cy@plain.test"]);
    // Neither MX nor address: permanent.
    submit(
        sub,
        "support@example.test",
        &["dee@nowhere.test"],
        &raw("support@example.test", "dee@nowhere.test", "nowhere"),
    )
    .await
    .expect("submitted");
    let m = wait_state(&srv, "support@example.test", RcptState::Bounced).await;
    assert!(
        m.recipients[0]
            .last_reply
            .as_deref()
            .is_some_and(|r| r.starts_with(&reply::NO_SUCH_DOMAIN.to_string())),
        "{:?}",
        m.recipients[0]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn relaying_needs_auth_or_a_trusted_network() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let srv = TestServer::start(&format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    ))
    .await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<odoo@example.test>")
        .await
        .expect_code(250);
    c.cmd("RCPT TO:<x@remote.test>")
        .await
        .expect(550, "5.7.1 Relaying denied");
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<odoo@example.test>")
        .await
        .expect(530, "5.7.0");
    srv.shutdown().await;

    // Like Postfix mynetworks: a trusted network relays without AUTH (and without TLS).
    let srv = TestServer::start(&format!(
        "{}[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\n",
        smarthost("only", sink.addr.port(), 10, "")
    ))
    .await;
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO app.internal").await.expect_code(250);
    c.cmd("MAIL FROM:<app@example.test>").await.expect_code(250);
    c.cmd("RCPT TO:<x@remote.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&raw("app@example.test", "x@remote.test", "trusted"))
        .await
        .expect_code(250);
    let got = wait_received(&sink, 1).await;
    assert_eq!(got[0].rcpts, ["x@remote.test"]);
    assert!(
        got[0].mail_from.starts_with("bounce+"),
        "{}",
        got[0].mail_from
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn forward_route_resends_with_srs_and_an_empty_forward_is_refused() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}[[aliases]]\naddress = \"fwd@example.test\"\nroute = \"fwd\"\n[[aliases]]\naddress = \"nowhere@example.test\"\nroute = \"nowhere\"\n[routes.fwd]\nkind = \"forward\"\nto = [\"owner@remote.test\"]\n[routes.nowhere]\nkind = \"forward\"\nto = []\n",
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    srv.send_inbound(
        "alice@client.test",
        &["fwd@example.test"],
        &common::message("forwarded", "for the owner"),
    )
    .await
    .expect_code(250);
    let got = wait_received(&sink, 1).await;
    let m = &got[0];
    assert_eq!(m.rcpts, ["owner@remote.test"]);
    assert!(
        m.mail_from.starts_with("SRS0=")
            && m.mail_from.ends_with("=client.test=alice@example.test"),
        "SRS sender in our domain, original inside: {}",
        m.mail_from
    );
    assert!(m.data.contains("Subject: forwarded"), "{}", m.data);
    assert!(m.data.contains("with forward id"), "{}", m.data);

    // The forward target's MTA bounces to the SRS address: the DSN goes on to Alice.
    let srs = m.mail_from.clone();
    srv.send_inbound(
        "",
        &[srs.as_str()],
        &common::message("dsn", "undeliverable"),
    )
    .await
    .expect_code(250);
    let got = wait_received(&sink, 2).await;
    assert_eq!(got[1].rcpts, ["alice@client.test"]);
    assert_eq!(
        got[1].mail_from, "",
        "a bounce travels with the null sender"
    );
    // A forged SRS address is unknown.
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd("RCPT TO:<SRS0=aaaa=aa=client.test=alice@example.test>")
        .await
        .expect(550, "5.1.1");

    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    let r = c.cmd("RCPT TO:<nowhere@example.test>").await;
    r.expect(550, reply::FORWARD_NO_TARGETS.status);
    srv.shutdown().await;
}

#[tokio::test]
async fn test_relay_cli_reports_success_and_the_precise_failure() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::Implicit,
        auth: Some(("u".into(), "p".into())),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let erp = Erp::reserve();
    let hosts = format!(
        "{}{}{}",
        smarthost(
            "good",
            sink.addr.port(),
            10,
            "username = \"u\"\npassword = \"p\"\ntls_verify = false"
        )
        .replace("security = \"none\"", "security = \"tls\""),
        smarthost(
            "badpass",
            sink.addr.port(),
            20,
            "username = \"u\"\npassword = \"wrong\"\ntls_verify = false"
        )
        .replace("security = \"none\"", "security = \"tls\""),
        smarthost(
            "strict",
            sink.addr.port(),
            30,
            "username = \"u\"\npassword = \"p\""
        )
        .replace("security = \"none\"", "security = \"tls\""),
    );
    let path = dir.path().join("mxgate.toml");
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
    let (code, out) = tokio::task::spawn_blocking(move || {
        (run("good"), run("badpass"), run("strict"), run("missing"))
    })
    .await
    .map(|(a, b, c, d)| {
        (
            (a.0, b.0, c.0, d.0),
            format!("{}|{}|{}|{}", a.1, b.1, c.1, d.1),
        )
    })
    .expect("join");
    assert_eq!(code, (Some(0), Some(1), Some(1), Some(1)), "{out}");
    let parts: Vec<&str> = out.split('|').collect();
    assert!(
        parts[0].starts_with("OK smarthost good") && parts[0].contains("AUTH ok"),
        "{out}"
    );
    assert!(
        parts[1].contains("authentication failed") && parts[1].contains("535"),
        "{out}"
    );
    assert!(
        parts[2].contains("TLS") && parts[2].to_lowercase().contains("certificate"),
        "{out}"
    );
    assert!(parts[3].contains("no smart host named"), "{out}");
    drop(sink);
}

#[tokio::test]
async fn one_connection_to_a_smart_host_carries_consecutive_messages() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    for (n, to) in ["one@remote.test", "two@remote.test"].iter().enumerate() {
        submit(
            srv.addr(Listener::Submission),
            "odoo@example.test",
            &[to],
            &raw("odoo@example.test", to, "reuse"),
        )
        .await
        .expect("submitted");
        wait_received(&sink, n + 1).await;
        // Recorded as sent only after the connection went back to the pool.
        let queue = srv.running().queue.clone();
        eventually(20, "sent", || async {
            queue
                .list(Some(RcptState::Sent), 100)
                .into_iter()
                .find(|m| m.recipients[0].address == *to)
        })
        .await;
    }
    assert_eq!(
        sink.connections(),
        1,
        "the second message reused the session"
    );
    srv.shutdown().await;
}

/// One trusted-network client sending on one connection until the server dies; returns
/// (through `accepted`) the subjects that got a 250.
async fn relay_sender(
    addr: std::net::SocketAddr,
    worker: usize,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut c = common::SmtpClient::connect(addr).await;
    if c.try_read_reply().await.map(|r| r.code) != Some(220)
        || c.try_cmd("EHLO app.internal").await.map(|r| r.code) != Some(250)
    {
        return;
    }
    for i in 0.. {
        let subject = format!("w{worker}-m{i}");
        let to = format!("r{worker}@remote.test");
        for cmd in [
            "MAIL FROM:<app@example.test>".to_string(),
            format!("RCPT TO:<{to}>"),
        ] {
            if c.try_cmd(&cmd).await.map(|r| r.code) != Some(250) {
                return;
            }
        }
        if c.try_cmd("DATA").await.map(|r| r.code) != Some(354) {
            return;
        }
        match c
            .try_send_data(&raw("app@example.test", &to, &subject))
            .await
        {
            Some(r) if r.code == 250 => accepted.lock().expect("lock").push(subject),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relayed_message_that_got_250_reaches_the_smart_host_after_sigkill() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[relay]\ntrusted_networks = [\"127.0.0.0/8\"]\n{}",
        smarthost("only", sink.addr.port(), 10, "")
    );
    let path = dir.path().join("mxgate.toml");
    std::fs::write(&path, common::base_toml(dir.path(), &erp.url(), &extra)).expect("write");
    let mut proc = common::process::spawn_server(&path);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|w| tokio::spawn(relay_sender(proc.submission, w, accepted.clone())))
        .collect();
    eventually(60, "100 messages accepted", || async {
        (accepted.lock().expect("lock").len() >= 100).then_some(())
    })
    .await;
    proc.child.kill().expect("SIGKILL mxgate");
    proc.child.wait().expect("reap");
    for s in senders {
        let _ = s.await;
    }
    let acked: HashSet<String> = accepted.lock().expect("lock").iter().cloned().collect();
    let mut proc2 = common::process::spawn_server(&path);
    eventually(60, "every 250'd message at the smart host", || async {
        let got: HashSet<String> = sink
            .received()
            .iter()
            .filter_map(|m| {
                m.data
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .map(|s| s.trim().to_string())
            })
            .collect();
        acked.iter().all(|s| got.contains(s)).then_some(())
    })
    .await;
    proc2.sigterm();
    assert_eq!(proc2.wait_exit(30), Some(0), "graceful exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_requeues_every_bounced_relay_recipient_with_queue_retry_failed() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    // The smart host refuses both (say, a blocked sender) until the operator fixes it.
    sink.script_rcpt(&["550 5.7.1 Sender blocked", "550 5.7.1 Sender blocked"]);
    let extra = format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    for to in ["a@remote.test", "b@remote.test"] {
        submit(
            srv.addr(Listener::Submission),
            "odoo@example.test",
            &[to],
            &raw("odoo@example.test", to, "blocked"),
        )
        .await
        .expect("submitted");
    }
    let queue = srv.running().queue.clone();
    eventually(20, "both bounced", || async {
        (queue.list(Some(RcptState::Bounced), 10).len() == 2).then_some(())
    })
    .await;
    let admin = srv.admin_url();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
            .arg("queue")
            .args(["--admin", &admin])
            .args(args)
            .output()
            .expect("run mxgate queue");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, list) = tokio::task::block_in_place(|| cli(&["list", "--state", "bounced"]));
    assert_eq!(code, Some(0));
    assert!(list.contains("Sender blocked"), "{list}");
    let (code, out) = tokio::task::block_in_place(|| cli(&["retry", "--failed"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 recipient(s) requeued"), "{out}");
    eventually(20, "both sent after the retry", || async {
        (queue.list(Some(RcptState::Sent), 10).len() == 2).then_some(())
    })
    .await;
    assert_eq!(sink.received().len(), 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn destination_concurrency_bounds_the_sessions_to_one_smart_host() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}[relay]\ndestination_concurrency = 1\n{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    // Five recipients of one message: five attempts become due together (queue.concurrency
    // is 8), but only one session to the host at a time — the same one, reused.
    let rcpts = ["a", "b", "c", "d", "e"].map(|l| format!("{l}@remote.test"));
    let to: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &to,
        &raw("odoo@example.test", "a@remote.test", "fanout"),
    )
    .await
    .expect("submitted");
    let got = wait_received(&sink, 5).await;
    let mut seen: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    seen.sort();
    assert_eq!(seen, rcpts);
    assert_eq!(sink.connections(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_pooled_session_the_host_closed_is_replaced_not_counted_as_a_failure() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.hang_up_after_each_message();
    let extra = format!(
        "{}{}",
        user_toml(&["example.test"]),
        smarthost("only", sink.addr.port(), 10, "")
    );
    let srv = TestServer::start(&extra).await;
    for (n, to) in ["one@remote.test", "two@remote.test"].iter().enumerate() {
        submit(
            srv.addr(Listener::Submission),
            "odoo@example.test",
            &[to],
            &raw("odoo@example.test", to, "stale"),
        )
        .await
        .expect("submitted");
        wait_received(&sink, n + 1).await;
        let queue = srv.running().queue.clone();
        let m = eventually(20, "sent", || async {
            queue
                .list(Some(RcptState::Sent), 100)
                .into_iter()
                .find(|m| m.recipients[0].address == *to)
        })
        .await;
        assert_eq!(m.recipients[0].attempts, 1, "{:?}", m.recipients[0]);
    }
    assert_eq!(sink.connections(), 2);
    srv.shutdown().await;
}
