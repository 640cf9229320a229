//! Submission as ERPs do it (Python smtplib, like Odoo's `ir.mail_server`): STARTTLS on 587,
//! implicit TLS on 465, AUTH only after TLS, enrolled sending domains, header From
//! alignment — and the message as it then leaves through the relay.

mod common;

use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{python_send, submit, user_toml};
use common::{Listener, TestServer, eventually};
use mxgate::reply;

fn relay_to(sink: &Sink, extra: &str) -> String {
    format!(
        "{}{extra}[[relay.smarthosts]]\nname = \"out\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        user_toml(&["example.test"]),
        sink.addr.port()
    )
}

async fn plain_sink() -> Sink {
    Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await
}

#[tokio::test]
async fn smtplib_starttls_on_587_and_implicit_tls_on_465_both_relay() {
    let sink = plain_sink().await;
    let srv = TestServer::start(&relay_to(&sink, "")).await;
    for (listener, implicit) in [(Listener::Submission, false), (Listener::Submissions, true)] {
        let r = python_send(
            srv.addr(listener),
            implicit,
            "s3cret",
            &[
                ("From", "Odoo <odoo@example.test>"),
                ("To", "Customer <c@remote.test>"),
                ("Subject", if implicit { "via 465" } else { "via 587" }),
            ],
            "Your order is confirmed.",
        )
        .await;
        assert!(r.ok, "{listener:?}: {}", r.output);
    }
    let got = eventually(20, "both messages at the smart host", || async {
        let r = sink.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let subjects: Vec<bool> = ["via 587", "via 465"]
        .iter()
        .map(|s| {
            got.iter()
                .any(|m| m.data.contains(&format!("Subject: {s}")))
        })
        .collect();
    assert_eq!(subjects, [true, true]);
    assert!(got.iter().all(|m| m.data.contains("with ESMTPSA")));
    srv.shutdown().await;
}

#[tokio::test]
async fn smtplib_with_a_wrong_password_or_foreign_sender_is_refused() {
    let sink = plain_sink().await;
    let srv = TestServer::start(&relay_to(&sink, "")).await;
    let r = python_send(
        srv.addr(Listener::Submission),
        false,
        "wrong",
        &[
            ("From", "odoo@example.test"),
            ("To", "c@remote.test"),
            ("Subject", "x"),
        ],
        "x",
    )
    .await;
    assert!(
        !r.ok && r.output.contains("SMTPAuthenticationError"),
        "{}",
        r.output
    );
    assert!(r.output.contains("535"), "{}", r.output);
    let r = python_send(
        srv.addr(Listener::Submission),
        false,
        "s3cret",
        &[
            ("From", "someone@other.test"),
            ("To", "c@remote.test"),
            ("Subject", "x"),
        ],
        "x",
    )
    .await;
    assert!(
        !r.ok && r.output.contains("SMTPSenderRefused"),
        "{}",
        r.output
    );
    assert!(
        r.output.contains("From address not allowed"),
        "{}",
        r.output
    );
    // AUTH before STARTTLS.
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO erp.test").await.expect_code(250);
    c.cmd("AUTH LOGIN")
        .await
        .expect(530, reply::MUST_STARTTLS.status);
    assert!(sink.received().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn header_from_outside_the_users_domains_is_rewritten_by_default() {
    let sink = plain_sink().await;
    let srv = TestServer::start(&relay_to(&sink, "")).await;
    let raw = "From: \"Jane Customer\" <jane@gmail.test>\r\nTo: <c@remote.test>\r\nSubject: on behalf\r\n\r\nhi\r\n";
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["c@remote.test"],
        raw,
    )
    .await
    .expect("accepted");
    let got = eventually(20, "message at the smart host", || async {
        sink.received().into_iter().next()
    })
    .await;
    assert!(
        got.data
            .contains("From: \"Jane Customer\" <odoo@example.test>\r\nReply-To: \"Jane Customer\" <jane@gmail.test>\r\n"),
        "{}",
        got.data
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn header_from_outside_the_users_domains_is_refused_in_reject_mode() {
    let sink = plain_sink().await;
    let srv = TestServer::start(&relay_to(
        &sink,
        "[submission]\nfrom_alignment = \"reject\"\n",
    ))
    .await;
    let raw = "From: <jane@gmail.test>\r\nTo: <c@remote.test>\r\nSubject: spoof\r\n\r\nhi\r\n";
    let err = submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["c@remote.test"],
        raw,
    )
    .await
    .expect_err("refused");
    assert!(
        err.contains("550") && err.contains("Header From not allowed"),
        "{err}"
    );
    let ok = "From: Shop <odoo@example.test>\r\nTo: <c@remote.test>\r\nSubject: fine\r\n\r\nhi\r\n";
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["c@remote.test"],
        ok,
    )
    .await
    .expect("aligned From is accepted");
    srv.shutdown().await;
}
