//! Stage ① end to end: whole SMTP conversations against the real server over TCP — plain,
//! pipelined, STARTTLS, BDAT, limits, submission AUTH — and a real client (mail-send).
//! Relay and smuggling attempts live in `tests/smuggling.rs`.

mod common;

use common::messages::plain;
use common::{Listener, SmtpClient, TestServer, eventually, message};
use mxgate::reply;

/// Asserts that `r` is exactly the catalogue reply `want` (code, status, text prefix).
#[track_caller]
fn expect_reply(r: &common::SmtpReply, want: &reply::Reply) {
    r.expect(
        want.code,
        format!("{} {}", want.status, want.text).trim_start(),
    );
}

#[tokio::test]
async fn full_conversation_is_queued_and_reaches_the_erp_with_a_received_header() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(
        &c.cmd("MAIL FROM:<alice@client.test>").await,
        &reply::SENDER_OK,
    );
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::RECIPIENT_OK,
    );
    c.cmd("DATA").await.expect_code(354);
    let body = message("full", "hello\r\n.leading dot");
    let r = c.send_data(&body).await;
    expect_reply(&r, &reply::QUEUED);
    expect_reply(&c.cmd("QUIT").await, &reply::CLOSING);
    assert!(c.is_closed().await);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    let raw = String::from_utf8(push.body).expect("utf8");
    // Our verdict and Authentication-Results on top (tests/auth.rs), then our Received.
    let received = raw.find("\r\nReceived: ").map_or("", |i| &raw[i + 2..]);
    assert!(raw.starts_with("X-Mxgate-Auth: "), "{raw}");
    assert!(received.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mx.example.test (mxgate) with ESMTP\r\n\tfor <sales@example.test>;"), "{raw}");
    assert!(
        raw.ends_with(&body),
        "dot-unstuffed message kept byte for byte: {raw}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn greeting_and_ehlo_advertise_the_extensions() {
    let srv = TestServer::start("").await;
    let mut c = SmtpClient::connect(srv.addr(Listener::Inbound)).await;
    let greeting = c.read_reply().await;
    assert_eq!(greeting.text(), "mx.example.test ESMTP mxgate");
    let ehlo = c.cmd("EHLO client.test").await;
    assert_eq!(ehlo.lines[0], "mx.example.test");
    for kw in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(ehlo.has_line(kw), "{kw} missing: {ehlo}");
    }
    assert!(
        !ehlo.has_line("AUTH"),
        "no AUTH on the inbound listener: {ehlo}"
    );
    c.cmd("HELO client.test").await.expect_code(250);
    expect_reply(&c.cmd("VRFY sales").await, &reply::VRFY_CANNOT_VERIFY);
    expect_reply(&c.cmd("NOOP").await, &reply::OK);
    expect_reply(&c.cmd("HELP").await, &reply::HELP);
    expect_reply(&c.cmd("EXPN staff").await, &reply::NOT_IMPLEMENTED);
    srv.shutdown().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.send_raw(b"MAIL FROM:<alice@client.test>\r\nRCPT TO:<sales@example.test>\r\nRCPT TO:<nobody@elsewhere.test>\r\nRCPT TO:<support@example.test>\r\nDATA\r\n").await;
    expect_reply(&c.read_reply().await, &reply::SENDER_OK);
    expect_reply(&c.read_reply().await, &reply::RECIPIENT_OK);
    expect_reply(&c.read_reply().await, &reply::RELAY_DENIED);
    expect_reply(&c.read_reply().await, &reply::RECIPIENT_OK);
    c.read_reply().await.expect_code(354);
    // Message, terminator and the next transaction in one write.
    let mut batch = common::smtp::stuff(&message("p1", "one")).into_bytes();
    batch.extend_from_slice(
        b"MAIL FROM:<>\r\nRCPT TO:<sales@example.test>\r\nBDAT 4 LAST\r\nhi\r\nQUIT\r\n",
    );
    c.send_raw(&batch).await;
    expect_reply(&c.read_reply().await, &reply::QUEUED);
    expect_reply(&c.read_reply().await, &reply::SENDER_OK);
    expect_reply(&c.read_reply().await, &reply::RECIPIENT_OK);
    expect_reply(&c.read_reply().await, &reply::QUEUED);
    expect_reply(&c.read_reply().await, &reply::CLOSING);
    eventually(10, "both messages at the ERP", || async {
        (srv.erp.pushes().len() >= 2).then_some(())
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn null_sender_is_accepted() {
    let srv = TestServer::start("").await;
    srv.send_inbound("", &["sales@example.test"], &message("dsn", "bounce"))
        .await
        .expect(250, "2.0.0");
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert_eq!(push.header("x-mxgate-envelope-from"), Some(""));
    srv.shutdown().await;
}

#[tokio::test]
async fn commands_out_of_sequence_are_refused() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    expect_reply(&c.cmd("MAIL FROM:<a@client.test>").await, &reply::NEED_EHLO);
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::NEED_MAIL,
    );
    expect_reply(&c.cmd("DATA").await, &reply::NEED_MAIL);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    expect_reply(
        &c.cmd("MAIL FROM:<a@client.test>").await,
        &reply::NESTED_MAIL,
    );
    expect_reply(&c.cmd("DATA").await, &reply::NO_VALID_RECIPIENTS);
    expect_reply(&c.cmd("RSET").await, &reply::RESET_OK);
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::NEED_MAIL,
    );
    expect_reply(
        &c.cmd("MAIL FROM:<a@client.test> XFOO=1").await,
        &reply::PARAM_NOT_IMPLEMENTED,
    );
    expect_reply(
        &c.cmd("MAIL FROM:<a@client.test> SIZE=x").await,
        &reply::PARAM_SYNTAX,
    );
    expect_reply(&c.cmd("FOO").await, &reply::SYNTAX_ERROR);
    srv.shutdown().await;
}

#[tokio::test]
async fn non_ascii_address_needs_smtputf8() {
    let srv =
        TestServer::start("[[aliases]]\naddress = \"jöran@example.test\"\nroute = \"crm\"\n").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(
        &c.cmd("MAIL FROM:<jösé@client.test>").await,
        &reply::SMTPUTF8_REQUIRED,
    );
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<jöran@example.test>").await,
        &reply::SMTPUTF8_REQUIRED,
    );
    c.cmd("RSET").await.expect_code(250);
    c.cmd("MAIL FROM:<jösé@client.test> SMTPUTF8")
        .await
        .expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<jöran@example.test>").await,
        &reply::RECIPIENT_OK,
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn starttls_upgrades_and_the_session_starts_over() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    expect_reply(&c.cmd("STARTTLS").await, &reply::NEED_EHLO);
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    expect_reply(&c.cmd("STARTTLS").await, &reply::READY_TO_START_TLS);
    let mut c = c.upgrade_tls().await;
    // RFC 3207 §4.2: state is reset, EHLO again, STARTTLS no longer offered.
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::NEED_EHLO,
    );
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(!ehlo.has_line("STARTTLS"), "{ehlo}");
    expect_reply(&c.cmd("STARTTLS").await, &reply::TLS_ALREADY_ACTIVE);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&message("tls", "secret"))
        .await
        .expect_code(250);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    let raw = String::from_utf8_lossy(&push.body).into_owned();
    assert!(raw.contains("with ESMTPS"), "{raw}");
    srv.shutdown().await;
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    // CVE-2011-0411: plaintext injected after STARTTLS must not run inside the TLS session.
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<sales@example.test>\r\n")
        .await;
    expect_reply(&c.read_reply().await, &reply::READY_TO_START_TLS);
    let mut c = c.upgrade_tls().await;
    // Had the injected MAIL run, this would be "503 nested MAIL"; had the replies been
    // kept, the next reply read would be one of theirs.
    expect_reply(&c.cmd("NOOP").await, &reply::OK);
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(&c.cmd("MAIL FROM:<a@client.test>").await, &reply::SENDER_OK);
    srv.shutdown().await;
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    let part1 = "Subject: chunks\r\n\r\n.not stuffed\r\n";
    c.send_raw(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes())
        .await;
    expect_reply(&c.read_reply().await, &reply::BDAT_CHUNK_OK);
    expect_reply(&c.cmd("DATA").await, &reply::DATA_AFTER_BDAT);
    c.send_raw(b"BDAT 5 LAST\r\nend\r\n").await;
    expect_reply(&c.read_reply().await, &reply::QUEUED);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    // BDAT content is taken as is: no dot-unstuffing.
    assert!(push.body.ends_with(format!("{part1}end\r\n").as_bytes()));
    srv.shutdown().await;
}

#[tokio::test]
async fn bdat_last_alone_and_bdat_without_a_transaction() {
    let srv = TestServer::start("").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    // Refused, but its 12 octets are still consumed: "MAIL FROM:<>" must not run.
    c.send_raw(b"BDAT 12 LAST\r\nMAIL FROM:<>").await;
    expect_reply(&c.read_reply().await, &reply::NEED_MAIL);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.send_raw(b"BDAT 3\r\nabcRCPT TO:<sales@example.test>\r\n")
        .await;
    expect_reply(&c.read_reply().await, &reply::NEED_RCPT);
    expect_reply(&c.read_reply().await, &reply::RECIPIENT_OK);
    let msg = message("bdat", "whole");
    c.send_raw(format!("BDAT {} LAST\r\n{msg}", msg.len()).as_bytes())
        .await;
    expect_reply(&c.read_reply().await, &reply::QUEUED);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert!(push.body.ends_with(msg.as_bytes()));
    srv.shutdown().await;
}

#[tokio::test]
async fn limits_have_the_replies_users_know() {
    let srv = TestServer::start("[smtp]\nmax_recipients = 2\nmax_message_bytes = \"2KiB\"\nmax_line_bytes = 600\nmax_hops = 3\n").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(
        &c.cmd(&format!("NOOP {}", "x".repeat(700))).await,
        &reply::LINE_TOO_LONG,
    );
    expect_reply(
        &c.cmd("MAIL FROM:<a@client.test> SIZE=4096").await,
        &reply::MESSAGE_TOO_BIG_DECLARED,
    );
    c.cmd("MAIL FROM:<a@client.test> SIZE=100")
        .await
        .expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("RCPT TO:<support@example.test>")
        .await
        .expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<sales+x@example.test>").await,
        &reply::TOO_MANY_RECIPIENTS,
    );
    c.cmd("DATA").await.expect_code(354);
    let big = message("big", &"0123456789abcdef\r\n".repeat(200));
    expect_reply(&c.send_data(&big).await, &reply::MESSAGE_TOO_BIG);
    // Still in sync after discarding the oversized body.
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let looped = format!(
        "{}{}",
        "Received: from a by b; x\r\n".repeat(4),
        message("loop", "x")
    );
    expect_reply(&c.send_data(&looped).await, &reply::MAIL_LOOP);
    c.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let three = format!(
        "{}{}",
        "Received: from a by b; x\r\n".repeat(3),
        message("ok", "x")
    );
    expect_reply(&c.send_data(&three).await, &reply::QUEUED);
    srv.shutdown().await;
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let srv = TestServer::start("[smtp]\nmax_errors = 3\n").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("BOGUS").await.expect_code(500);
    c.cmd("BOGUS").await.expect_code(500);
    c.cmd("BOGUS").await.expect_code(500);
    expect_reply(&c.read_reply().await, &reply::TOO_MANY_ERRORS);
    assert!(c.is_closed().await);
    srv.shutdown().await;
}

#[tokio::test]
async fn idle_and_data_timeouts_answer_421_and_close() {
    let srv =
        TestServer::start("[smtp]\nidle_timeout = \"300ms\"\ndata_timeout = \"300ms\"\n").await;
    let mut idle = srv.smtp(Listener::Inbound).await;
    expect_reply(&idle.read_reply().await, &reply::IDLE_TIMEOUT);
    assert!(idle.is_closed().await);
    let mut slow = srv.smtp(Listener::Inbound).await;
    slow.cmd("EHLO client.test").await.expect_code(250);
    slow.cmd("MAIL FROM:<a@client.test>").await.expect_code(250);
    slow.cmd("RCPT TO:<sales@example.test>")
        .await
        .expect_code(250);
    slow.cmd("DATA").await.expect_code(354);
    slow.send_raw(b"Subject: never ends\r\n").await;
    expect_reply(&slow.read_reply().await, &reply::DATA_TIMEOUT);
    assert!(slow.is_closed().await);
    srv.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_421() {
    let srv = TestServer::start("[smtp]\nmax_connections_per_ip = 2\n").await;
    let _a = srv.smtp(Listener::Inbound).await;
    let mut b = srv.smtp(Listener::Inbound).await;
    let mut c = SmtpClient::connect(srv.addr(Listener::Inbound)).await;
    expect_reply(&c.read_reply().await, &reply::TOO_MANY_CONNECTIONS_FROM_IP);
    assert!(c.is_closed().await);
    // A slot is freed when a session ends.
    expect_reply(&b.cmd("QUIT").await, &reply::CLOSING);
    assert!(b.is_closed().await);
    let mut d = common::eventually(10, "a free slot", || async {
        let mut d = SmtpClient::connect(srv.addr(Listener::Inbound)).await;
        (d.read_reply().await.code == 220).then_some(d)
    })
    .await;
    d.cmd("EHLO client.test").await.expect_code(250);
    srv.shutdown().await;
}

#[tokio::test]
async fn garbage_and_binary_input_get_replies_not_a_crash() {
    let srv = TestServer::start("[smtp]\nmax_errors = 1000\n").await;
    let mut c = srv.smtp(Listener::Inbound).await;
    let mut seed = 0x1234_5678_9abc_def0_u64;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut line: Vec<u8> = seed
            .to_le_bytes()
            .iter()
            .map(|b| if *b == b'\n' { 0 } else { *b })
            .collect();
        line.extend_from_slice(b"\r\n");
        c.send_raw(&line).await;
        let r = c.read_reply().await;
        assert!(r.code >= 500, "{r}");
    }
    c.send_raw(b"\x00\x01\x02 \xff\xfe\r\nEHLO \xc3\x28\r\nMAIL FROM:<\xff@x>\r\n")
        .await;
    for _ in 0..3 {
        assert!(c.read_reply().await.code >= 500);
    }
    c.cmd("EHLO client.test").await.expect_code(250);
    srv.shutdown().await;
}

/// An argon2id PHC hash with small parameters so tests stay fast.
fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("dGVzdHNhbHR0ZXN0c2FsdA").expect("salt");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn submission_user(max_failures: usize) -> String {
    format!(
        "[smtp]\nmax_auth_failures = {max_failures}\n[[submission.users]]\nname = \"odoo\"\npassword_hash = \"{}\"\ndomains = [\"example.test\"]\n",
        hash("s3cret")
    )
}

#[tokio::test]
async fn submission_requires_tls_then_auth_and_enrolled_sender_domains() {
    let srv = TestServer::start(&submission_user(5)).await;
    let mut c = srv.smtp(Listener::Submission).await;
    let ehlo = c.cmd("EHLO erp.test").await;
    assert!(
        ehlo.has_line("STARTTLS") && !ehlo.has_line("AUTH"),
        "{ehlo}"
    );
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "s3cret")))
            .await,
        &reply::MUST_STARTTLS,
    );
    expect_reply(
        &c.cmd("MAIL FROM:<odoo@example.test>").await,
        &reply::AUTH_REQUIRED,
    );
    c.cmd("STARTTLS").await.expect_code(220);
    let mut c = c.upgrade_tls().await;
    let ehlo = c.cmd("EHLO erp.test").await;
    assert!(ehlo.has_line("AUTH PLAIN LOGIN"), "{ehlo}");
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "wrong")))
            .await,
        &reply::AUTH_INVALID,
    );
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("nobody", "s3cret")))
            .await,
        &reply::AUTH_INVALID,
    );
    expect_reply(&c.cmd("AUTH LOGIN").await, &reply::AUTH_LOGIN_USERNAME);
    expect_reply(&c.cmd("b2Rvbw==").await, &reply::AUTH_LOGIN_PASSWORD);
    expect_reply(&c.cmd("czNjcmV0").await, &reply::AUTH_OK);
    expect_reply(&c.cmd("AUTH PLAIN").await, &reply::AUTH_ALREADY);
    expect_reply(
        &c.cmd("MAIL FROM:<odoo@other.test>").await,
        &reply::SENDER_NOT_ALLOWED,
    );
    c.cmd("MAIL FROM:<odoo@Example.Test>")
        .await
        .expect_code(250);
    expect_reply(
        &c.cmd("RCPT TO:<customer@elsewhere.test>").await,
        &reply::RECIPIENT_OK,
    );
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::RECIPIENT_OK,
    );
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&message("sub", "from the ERP"))
        .await
        .expect_code(250);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    assert!(String::from_utf8_lossy(&push.body).contains("with ESMTPSA"));
    srv.shutdown().await;
}

#[tokio::test]
async fn auth_is_refused_on_inbound_and_after_too_many_failures() {
    let srv = TestServer::start(&submission_user(2)).await;
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    expect_reply(&c.cmd("AUTH LOGIN").await, &reply::AUTH_NOT_ON_LISTENER);
    let mut c = srv.smtp(Listener::Submissions).await;
    let ehlo = c.cmd("EHLO erp.test").await;
    assert!(
        ehlo.has_line("AUTH PLAIN LOGIN") && !ehlo.has_line("STARTTLS"),
        "{ehlo}"
    );
    expect_reply(&c.cmd("AUTH CRAM-MD5").await, &reply::AUTH_MECHANISM);
    expect_reply(&c.cmd("AUTH PLAIN").await, &reply::AUTH_CONTINUE);
    expect_reply(&c.cmd("*").await, &reply::AUTH_CANCELLED);
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "bad1")))
            .await,
        &reply::AUTH_INVALID,
    );
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "bad2")))
            .await,
        &reply::AUTH_INVALID,
    );
    // Even the right password is refused now: the address is blocked for a while.
    expect_reply(
        &c.cmd(&format!("AUTH PLAIN {}", plain("odoo", "s3cret")))
            .await,
        &reply::AUTH_TOO_MANY_FAILURES,
    );
    assert!(c.is_closed().await);
    srv.shutdown().await;
}

#[tokio::test]
async fn mail_send_delivers_through_starttls_and_auth() {
    use mail_send::SmtpClientBuilder;
    use mail_send::mail_builder::MessageBuilder;
    let srv = TestServer::start(&submission_user(5)).await;
    let port = srv.addr(Listener::Submission).port();
    let message = MessageBuilder::new()
        .from(("Odoo", "odoo@example.test"))
        .to(vec![
            ("Sales", "sales@example.test"),
            ("Support", "support@example.test"),
        ])
        .subject("Quotation S00042")
        .text_body("Hello from the ERP.\n.\nA line with a lone dot above.");
    SmtpClientBuilder::new_with_tls_connector("127.0.0.1", port, common::smtp::tls_connector())
        .implicit_tls(false)
        .helo_host("erp.example.test")
        .credentials(("odoo", "s3cret"))
        .connect()
        .await
        .expect("connect, STARTTLS, AUTH")
        .send(message)
        .await
        .expect("message accepted");
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    let raw = String::from_utf8_lossy(&push.body).into_owned();
    assert!(raw.contains("Subject: Quotation S00042"), "{raw}");
    assert!(
        raw.contains("\r\n.\r\nA line with a lone dot above."),
        "{raw}"
    );
    srv.shutdown().await;
}
