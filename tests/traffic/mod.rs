//! Real outbound traffic for the statistics tests: an authenticated ERP submits through
//! mxgate, which relays to a loopback smart host (`common::sink`) scripted to accept or
//! refuse each recipient, one message at a time so each scripted reply meets its message.

#![allow(dead_code)]

use crate::common::sink::{Sink, SinkOptions, SinkTls};
use crate::common::submit::{submit, user_toml};
use crate::common::{Listener, TestServer, eventually};
use mxgate::metrics::{BOUNCES, MESSAGES_DELIVERED};
use mxgate::queue::RcptState;

/// One message of the traffic: sender, recipient, and the smart host's RCPT reply
/// (`None` = accepted).
pub struct Send {
    pub from: &'static str,
    pub to: &'static str,
    pub refuse: Option<&'static str>,
}

pub const fn send(from: &'static str, to: &'static str, refuse: Option<&'static str>) -> Send {
    Send { from, to, refuse }
}

/// Several providers, categories and two sending domains: 5 delivered, 4 bounced.
pub const MIX: &[Send] = &[
    send("shop@example.test", "ann@gmail.com", None),
    send("shop@example.test", "bob@gmail.com", None),
    send("news@shop.test", "cat@yahoo.com", None),
    send("shop@example.test", "dan@outlook.com", None),
    send("news@shop.test", "eve@gmail.com", None),
    send(
        "shop@example.test",
        "nobody@gmail.com",
        Some("550 5.1.1 The email account that you tried to reach does not exist. gsmtp"),
    ),
    send(
        "shop@example.test",
        "gone@gmail.com",
        Some("550 5.1.1 The email account that you tried to reach does not exist. gsmtp"),
    ),
    send(
        "news@shop.test",
        "full@yahoo.com",
        Some("552 5.2.2 Mailbox full: over quota"),
    ),
    send(
        "news@shop.test",
        "spam@outlook.com",
        Some("550 5.7.1 Service unavailable, Client host blocked using Spamhaus"),
    ),
];

/// Config for a server that relays `example.test` and `shop.test` mail to `sink`.
pub fn relay_toml(sink: &Sink, extra: &str) -> String {
    format!(
        "{}[[domains]]\nname = \"shop.test\"\n[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 10\nsecurity = \"none\"\n{extra}\n",
        user_toml(&["example.test", "shop.test"]),
        sink.addr.port(),
    )
}

pub async fn sink() -> Sink {
    Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await
}

/// Submits each message, waits until its recipient is final (sent or bounced), then
/// until the statistics count every send.
pub async fn record(srv: &TestServer, sink: &Sink, sends: &[Send]) {
    record_final(srv, sink, sends).await;
    // The statistics are committed with the queue's record of the state: wait for them.
    eventually(20, "statistics count every send", || async {
        let (status, body) = srv.admin_get("/api/bounces/summary").await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n = v["delivered"].as_u64()? + v["bounced"].as_u64()?;
        (status == 200 && n >= sends.len() as u64).then_some(())
    })
    .await;
    // The report counts its metrics just after that commit: wait for those too.
    eventually(20, "metrics count every send", || async {
        let delivered = srv.metric(MESSAGES_DELIVERED, &[]).await.unwrap_or(0.0);
        let bounced = srv.metric(BOUNCES, &[]).await.unwrap_or(0.0);
        (delivered + bounced >= sends.len() as f64).then_some(())
    })
    .await;
}

/// Submits each message and waits until its recipient is final (sent or bounced).
pub async fn record_final(srv: &TestServer, sink: &Sink, sends: &[Send]) {
    for (i, s) in sends.iter().enumerate() {
        if let Some(reply) = s.refuse {
            sink.script_rcpt(&[reply]);
        }
        let subject = format!("traffic-{i}-{}", s.to);
        let raw = format!(
            "From: Shop <{}>\r\nTo: <{}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@erp.test>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\nHello\r\n",
            s.from, s.to
        );
        submit(srv.addr(Listener::Submission), s.from, &[s.to], &raw)
            .await
            .unwrap_or_else(|e| panic!("submit {subject}: {e}"));
        let want = if s.refuse.is_some() {
            RcptState::Bounced
        } else {
            RcptState::Sent
        };
        let queue = srv.running().queue.clone();
        eventually(20, &format!("{} {want:?}", s.to), || {
            let q = queue.clone();
            async move {
                q.list(None, 10_000)
                    .into_iter()
                    .flat_map(|m| m.recipients)
                    .find(|r| r.address == s.to && r.state == want)
            }
        })
        .await;
    }
}
