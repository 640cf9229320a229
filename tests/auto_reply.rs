//! Inbound auto-replies (issue 15 item 5) through the real inbound listener to the
//! stand-in ERP: tagged `X-Mxgate-Auto-Reply: yes` by default, dropped or delivered as is
//! per `[[domains]] auto_replies`, counted in `mxgate_inbound_messages_total`.

mod common;

use common::{TestServer, eventually};
use mxgate::metrics::INBOUND_MESSAGES;
use mxgate::queue::RcptState;

/// Two more alias domains: `drop.test` drops auto-replies, `keep.test` delivers them.
const DOMAINS: &str = r#"
[[domains]]
name = "drop.test"
auto_replies = "drop"
[[domains]]
name = "keep.test"
auto_replies = "deliver"
[[aliases]]
address = "info@drop.test"
route = "crm"
[[aliases]]
address = "info@keep.test"
route = "crm"
"#;

fn out_of_office(to: &str, subject: &str, marker: &str) -> String {
    format!(
        "From: Bob <bob@client.test>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n{marker}\r\n\r\nI am away until Monday.\r\n"
    )
}

async fn push_with_subject(srv: &TestServer, subject: &str) -> String {
    let wanted = format!("Subject: {subject}\r\n");
    eventually(10, subject, || async {
        srv.erp
            .pushes()
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .find(|b| b.contains(&wanted))
    })
    .await
}

#[tokio::test]
async fn an_auto_reply_reaches_the_erp_tagged_and_ordinary_mail_does_not() {
    let srv = TestServer::start(DOMAINS).await;
    for (subject, marker) in [
        ("ooo-1", "Auto-Submitted: auto-replied"),
        ("plain-1", "X-Mailer: Thunderbird"),
        ("ooo-2", "X-Mxgate-Auto-Reply: yes"), // a sender cannot tag itself
    ] {
        let body = out_of_office("sales@example.test", subject, marker);
        srv.send_inbound("bob@client.test", &["sales@example.test"], &body)
            .await
            .expect_code(250);
    }
    let tagged = push_with_subject(&srv, "ooo-1").await;
    let head = &tagged[..tagged.find("\r\n\r\n").expect("header end")];
    let lines: Vec<&str> = head.lines().collect();
    // Below the session's own X-Mxgate-Auth, which stays first, above what came from outside.
    assert!(lines[0].starts_with("X-Mxgate-Auth:"), "{head}");
    assert_eq!(lines[1], "X-Mxgate-Auto-Reply: yes", "{head}");
    assert_eq!(head.matches("X-Mxgate-Auto-Reply").count(), 1);
    let plain = push_with_subject(&srv, "plain-1").await;
    assert!(!plain.contains("X-Mxgate-Auto-Reply"), "{plain}");
    let spoof = push_with_subject(&srv, "ooo-2").await;
    assert!(!spoof.contains("X-Mxgate-Auto-Reply"), "{spoof}");
    let count = srv
        .metric(
            INBOUND_MESSAGES,
            &[("result", "auto_reply"), ("reason", "tag")],
        )
        .await;
    assert_eq!(count, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_drop_domain_keeps_auto_replies_from_the_erp_and_a_deliver_domain_passes_them() {
    let srv = TestServer::start(DOMAINS).await;
    let vacation = "Subject: Out of Office: back Monday"; // recognised by its subject alone
    let dropped = out_of_office("info@drop.test", "ooo-drop", "Precedence: auto_reply");
    srv.send_inbound("bob@client.test", &["info@drop.test"], &dropped)
        .await
        .expect_code(250);
    let kept = format!("From: bob@client.test\r\nTo: info@keep.test\r\n{vacation}\r\n\r\nAway\r\n");
    srv.send_inbound("bob@client.test", &["info@keep.test"], &kept)
        .await
        .expect_code(250);
    let body = push_with_subject(&srv, "Out of Office: back Monday").await;
    assert!(
        !body.contains("X-Mxgate-Auto-Reply"),
        "delivered as is: {body}"
    );
    let r = eventually(10, "the dropped recipient recorded", || async {
        srv.running()
            .queue
            .list(None, 10)
            .into_iter()
            .flat_map(|m| m.recipients)
            .find(|r| r.address == "info@drop.test" && r.state == RcptState::Sent)
    })
    .await;
    assert_eq!(
        r.last_reply.as_deref(),
        Some("auto-reply dropped (auto_replies = drop)")
    );
    assert_eq!(srv.erp.pushes().len(), 1, "only the deliver domain's copy");
    for (reason, n) in [("drop", 1.0), ("deliver", 1.0)] {
        let got = srv
            .metric(
                INBOUND_MESSAGES,
                &[("result", "auto_reply"), ("reason", reason)],
            )
            .await;
        assert_eq!(got, Some(n), "{reason}");
    }
    srv.shutdown().await;
}
