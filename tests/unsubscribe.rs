//! One-click unsubscribe (RFC 8058; issue 6 item 6) end to end: mass mail leaves with
//! `List-Unsubscribe` (HTTPS one-click URL + `unsubscribe+TOKEN@` mailto) and
//! `List-Unsubscribe-Post`; a POST to the URL or a mail to the alias puts the recipient on
//! the suppression list, and submission then refuses it with `550 5.7.1 Recipient suppressed`.

mod common;

use common::erp::http_request;
use common::messages::erp_mail;
use common::sink::{Received, Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::{Listener, TestServer, eventually, message};
use mxgate::reply;
use mxgate::suppression::Source as SuppressionSource;

async fn send(srv: &TestServer, sink: &Sink, to: &str, subject: &str, stream: &str) -> Received {
    submit(
        srv.addr(Listener::Submission),
        "news@example.test",
        &[to],
        &erp_mail("news@example.test", to, subject, Some(stream)),
    )
    .await
    .expect("submitted");
    let to = to.to_string();
    eventually(20, "message at the sink", || async {
        sink.received()
            .into_iter()
            .find(|r| r.rcpts == [to.as_str()])
    })
    .await
}

/// The unfolded value of header `name` in `data`.
fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = out.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if out.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            out = Some(v.trim().to_string());
        }
    }
    out
}

#[tokio::test]
async fn one_click_post_and_mail_to_the_alias_unsubscribe_and_submission_refuses() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let extra = format!(
        "{}[streams]\nlist_unsubscribe = true\nunsubscribe_url = \"https://mx.example.test/\"\n\
         [[relay.smarthosts]]\nname = \"main\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 10\nsecurity = \"none\"\n",
        user_toml(&["example.test"]),
        sink.addr.port()
    );
    let srv = TestServer::start(&extra).await;
    let domain = srv.config.bounce_domain().to_string();

    // Mass mail gets the headers; the stream header is gone.
    let got = send(&srv, &sink, "reader@remote.test", "news-1", "mass").await;
    let lu = header(&got.data, "List-Unsubscribe").expect("List-Unsubscribe");
    assert_eq!(
        header(&got.data, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        header(&got.data, "X-Mxgate-Stream").is_none(),
        "{}",
        got.data
    );
    let url = lu
        .split(['<', '>'])
        .find(|p| p.starts_with("https://"))
        .expect("https URL")
        .to_string();
    let token = url
        .strip_prefix("https://mx.example.test/unsubscribe/")
        .expect("URL under the configured base")
        .to_string();
    assert!(
        lu.contains(&format!("<mailto:unsubscribe+{token}@{domain}>")),
        "{lu}"
    );

    // Transactional mail does not get them.
    let t = send(
        &srv,
        &sink,
        "customer@remote.test",
        "invoice",
        "transactional",
    )
    .await;
    assert!(header(&t.data, "List-Unsubscribe").is_none(), "{}", t.data);

    // A forged token is refused; the real one suppresses the recipient (twice is fine).
    let admin = srv.admin_url();
    // Change a character that carries tag bits (base32's last one may be partly padding,
    // which decoders ignore) to one it is not.
    let at = token.len() - 2;
    let other = if &token[at..=at] == "a" { "b" } else { "a" };
    let forged = format!("{}{other}{}", &token[..at], &token[at + 1..]);
    let (status, _) = http_request(
        "POST",
        &format!("{admin}/unsubscribe/{forged}"),
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        !srv.running()
            .suppressions
            .is_suppressed("reader@remote.test")
    );
    for _ in 0..2 {
        let (status, body) = http_request(
            "POST",
            &format!("{admin}/unsubscribe/{token}"),
            "List-Unsubscribe=One-Click",
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let entry = srv
        .running()
        .suppressions
        .get("reader@remote.test")
        .expect("store")
        .expect("suppressed");
    assert_eq!(entry.source, SuppressionSource::Unsubscribe);

    // Submission now refuses the recipient.
    let err = submit(
        srv.addr(Listener::Submission),
        "news@example.test",
        &["reader@remote.test"],
        &erp_mail(
            "news@example.test",
            "reader@remote.test",
            "news-2",
            Some("mass"),
        ),
    )
    .await
    .expect_err("suppressed recipient refused");
    assert!(
        err.contains(&reply::RECIPIENT_SUPPRESSED.to_string()) || err.contains("550"),
        "{err}"
    );

    // The mailto: a mail to unsubscribe+TOKEN@ suppresses the other reader.
    let got = send(&srv, &sink, "other@remote.test", "news-3", "mass").await;
    let lu = header(&got.data, "List-Unsubscribe").expect("List-Unsubscribe");
    let mailto = lu
        .split(['<', '>'])
        .find_map(|p| p.strip_prefix("mailto:"))
        .expect("mailto")
        .to_string();
    srv.send_inbound(
        "other@remote.test",
        &[&mailto],
        &message("unsubscribe", "x"),
    )
    .await
    .expect_code(250);
    let list = srv.running().suppressions.clone();
    eventually(10, "unsubscribe by mail recorded", || async {
        list.get("other@remote.test")
            .ok()
            .flatten()
            .filter(|e| e.source == SuppressionSource::Unsubscribe)
    })
    .await;
    // A forged alias is an unknown user.
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<x@remote.test>").await.expect_code(250);
    c.cmd(&format!(
        "RCPT TO:<unsubscribe+{}a@{domain}>",
        &mailto[12..20]
    ))
    .await
    .expect_code(550);
    srv.shutdown().await;
}
