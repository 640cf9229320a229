//! Per-client rates (issue 16 item 3) through the socket: connections (421 4.7.0), messages
//! and recipients (451 4.7.1) per client IP and per client /24, and a submission login's
//! `max_messages_per_hour` (451 4.7.1 and a `rate_limited` event). Test clients share
//! 127.0.0.1, so the limits are small; other clients and networks connect from other
//! 127/8 addresses.

mod common;

use std::net::IpAddr;

use common::messages::plain;
use common::submit::user_toml;
use common::{Erp, Listener, SmtpClient, TestServer, eventually};
use mxgate::metrics::SMTP_POLICY;
use mxgate::reply;
use serde_json::Value;

#[track_caller]
fn expect_reply(r: &common::SmtpReply, want: &reply::Reply) {
    r.expect(
        want.code,
        format!("{} {}", want.status, want.text).trim_start(),
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

async fn banner_from(srv: &TestServer, src: &str) -> (SmtpClient, common::SmtpReply) {
    let mut c = SmtpClient::connect_from(ip(src), srv.addr(Listener::Inbound)).await;
    let r = c.read_reply().await;
    (c, r)
}

#[tokio::test]
async fn connections_over_the_client_rate_get_421_4_7_0_and_other_clients_do_not() {
    let srv = TestServer::start("[rates.client]\nconnections_per_minute = 2\n").await;
    for _ in 0..2 {
        banner_from(&srv, "127.0.0.1").await.1.expect_code(220);
    }
    let (mut c, r) = banner_from(&srv, "127.0.0.1").await;
    expect_reply(&r, &reply::CONNECTION_RATE);
    assert!(c.is_closed().await);
    banner_from(&srv, "127.0.0.2").await.1.expect_code(220);
    // The ERP's submission port has its own limits (logins), not the MX's.
    srv.smtp(Listener::Submission).await;
    let labels = [("check", "client_connection_rate"), ("action", "tempfail")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn the_network_rate_counts_every_address_of_a_slash_24() {
    let srv = TestServer::start("[rates.network]\nconnections_per_minute = 2\n").await;
    banner_from(&srv, "127.0.0.1").await.1.expect_code(220);
    banner_from(&srv, "127.0.0.2").await.1.expect_code(220);
    expect_reply(
        &banner_from(&srv, "127.0.0.3").await.1,
        &reply::CONNECTION_RATE,
    );
    banner_from(&srv, "127.0.1.1").await.1.expect_code(220);
    let labels = [("check", "network_connection_rate"), ("action", "tempfail")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn messages_and_recipients_over_the_rate_get_451_4_7_1() {
    let srv = TestServer::start(
        "[smtp]\nmax_errors = 100\n[rates.client]\nmessages_per_minute = 2\nrecipients_per_minute = 3\n",
    )
    .await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    // Refused recipients count too: a dictionary attack is many RCPTs.
    c.cmd("RCPT TO:<nobody@elsewhere.test>")
        .await
        .expect_code(550);
    c.cmd("RCPT TO:<support@example.test>")
        .await
        .expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<sales+x@example.test>").await,
        &reply::RECIPIENT_RATE,
    );
    c.cmd("RSET").await.expect_code(250);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RSET").await.expect_code(250);
    expect_reply(
        &c.cmd("MAIL FROM:<a@client.test>").await,
        &reply::MESSAGE_RATE,
    );
    // Another client is counted on its own.
    let (mut other, r) = banner_from(&srv, "127.0.0.9").await;
    r.expect_code(220);
    other.cmd("EHLO other.test").await.expect_code(250);
    other.cmd("MAIL FROM:<b@other.test>").await.expect_code(250);
    let labels = [("check", "client_message_rate"), ("action", "tempfail")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    let labels = [("check", "client_recipient_rate"), ("action", "tempfail")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_login_over_max_messages_per_hour_gets_451_and_an_event_reaches_the_erp() {
    let receiver = Erp::start().await;
    let toml = format!(
        "{}max_messages_per_hour = 2\n[events]\nurl = \"{}/events\"\nretry_max = \"1s\"\n",
        user_toml(&["example.test"]),
        receiver.url()
    );
    let srv = TestServer::start(&toml).await;
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO erp.test").await.expect_code(250);
    c.cmd("STARTTLS").await.expect_code(220);
    let mut c = c.upgrade_tls().await;
    c.cmd("EHLO erp.test").await.expect_code(250);
    c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "s3cret")))
        .await
        .expect_code(235);
    for _ in 0..2 {
        c.cmd("MAIL FROM:<odoo@example.test>")
            .await
            .expect_code(250);
        c.cmd("RSET").await.expect_code(250);
    }
    expect_reply(
        &c.cmd("MAIL FROM:<odoo@example.test>").await,
        &reply::USER_HOURLY_LIMIT,
    );
    let event: Value = eventually(20, "rate_limited event", || async {
        receiver
            .pushes()
            .iter()
            .filter(|p| p.path == "/events")
            .map(|p| serde_json::from_slice::<Value>(&p.body).expect("JSON"))
            .find(|v| v["event"] == "rate_limited")
    })
    .await;
    assert_eq!(event["sender"], "odoo@example.test");
    assert_eq!(event["status"], "4.7.1");
    let why = event["reply"].as_str().expect("reply");
    assert!(
        why.contains("login odoo") && why.contains("max_messages_per_hour = 2"),
        "{why}"
    );
    let labels = [("check", "user_hourly"), ("action", "tempfail")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}
