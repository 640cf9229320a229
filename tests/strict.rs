//! Strict SMTP where RFC 5321 is strict (issue 16 item 4), through the socket: command line
//! length, address syntax before any relay decision, the pregreet test, EHLO/HELO without
//! a name.

mod common;

use common::{Listener, SmtpClient, TestServer, message};
use mxgate::metrics::SMTP_POLICY;
use mxgate::reply;

#[track_caller]
fn expect_reply(r: &common::SmtpReply, want: &reply::Reply) {
    r.expect(
        want.code,
        format!("{} {}", want.status, want.text).trim_start(),
    );
}

#[tokio::test]
async fn command_lines_over_512_octets_get_500_5_5_2_but_data_and_auth_lines_do_not() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    // 512 octets with CRLF is the limit itself; one more is over it.
    let at_limit = format!("NOOP {}", "x".repeat(512 - 2 - 5));
    expect_reply(&c.cmd(&at_limit).await, &reply::OK);
    let over = format!("NOOP {}", "x".repeat(512 - 2 - 5 + 1));
    expect_reply(&c.cmd(&over).await, &reply::LINE_TOO_LONG);
    let long_rcpt = format!("RCPT TO:<{}@example.test>", "a".repeat(600));
    expect_reply(&c.cmd(&long_rcpt).await, &reply::LINE_TOO_LONG);
    // Text lines in DATA keep their own limit (RFC 5321 §4.5.3.1.6: 1000 octets).
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let body = message("long", &"y".repeat(900));
    expect_reply(&c.send_data(&body).await, &reply::QUEUED);
    // RFC 4954 §4: an AUTH line may be 12288 octets; it is read as a command (and refused
    // here only because TLS is not up yet).
    let mut sub = srv.smtp(Listener::Submission).await;
    sub.cmd("EHLO erp.test").await.expect_code(250);
    let auth = format!("AUTH PLAIN {}", "QUFB".repeat(300));
    expect_reply(&sub.cmd(&auth).await, &reply::MUST_STARTTLS);
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_addresses_get_501_5_1_3_on_mail_and_rcpt_before_any_relay_decision() {
    let srv = TestServer::start("[smtp]\nmax_errors = 100\n").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    let bad = [
        "<victim@example.test@elsewhere.test>",
        "<a@b@example.test>",
        "<@example.test>",
        "<sales@>",
        "<victim@[127.0.0]>",
        "<victim@[IPv6:::zz]>",
        "<victim@[127.0.0.1>",
        "<victim@127.0.0.1]>",
        "<sales@example.test",
        "<<sales@example.test>>",
        "sales@example.test",
        "<sa\x01les@example.test>",
        "<a%b@[300.1.1.1]>",
        "<@:victim@elsewhere.test>",
    ];
    for path in bad {
        let r = c.cmd(&format!("MAIL FROM:{path}")).await;
        expect_reply(&r, &reply::BAD_ADDRESS_SYNTAX);
    }
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    for path in bad {
        let r = c.cmd(&format!("RCPT TO:{path}")).await;
        expect_reply(&r, &reply::BAD_ADDRESS_SYNTAX);
    }
    // Well-formed tricks are still refused as relaying, not as syntax.
    expect_reply(
        &c.cmd("RCPT TO:<victim@[127.0.0.1]>").await,
        &reply::RELAY_DENIED,
    );
    expect_reply(
        &c.cmd("RCPT TO:<victim%elsewhere.test@example.test>").await,
        &reply::RELAY_DENIED,
    );
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::RECIPIENT_OK,
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_that_talks_before_the_banner_is_disconnected_with_554_5_5_1() {
    let srv = TestServer::start("[smtp]\ngreet_delay = \"2s\"\n").await;
    let mut bot = SmtpClient::connect(srv.addr(Listener::Inbound)).await;
    bot.send_raw(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
        .await;
    expect_reply(&bot.read_reply().await, &reply::PREGREET);
    assert!(bot.is_closed().await);
    let labels = [("check", "pregreet"), ("action", "reject")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    // A client that waits for the banner gets it and goes on.
    let mut patient = srv.smtp(Listener::Inbound).await;
    patient.cmd("EHLO client.test").await.expect_code(250);
    // Submission clients are not tested: talking first there is only early, not refused.
    let mut erp = SmtpClient::connect(srv.addr(Listener::Submission)).await;
    erp.send_raw(b"EHLO erp.test\r\n").await;
    erp.read_reply().await.expect_code(220);
    erp.read_reply().await.expect_code(250);
    srv.shutdown().await;
}

#[tokio::test]
async fn ehlo_and_helo_without_a_name_get_501() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    for cmd in ["EHLO", "HELO", "EHLO   ", "HELO \t"] {
        expect_reply(&c.cmd(cmd).await, &reply::BAD_HELO);
    }
    expect_reply(&c.cmd("MAIL FROM:<a@client.test>").await, &reply::NEED_EHLO);
    c.cmd("HELO client.test").await.expect_code(250);
    srv.shutdown().await;
}
