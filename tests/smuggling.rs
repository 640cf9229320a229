//! Hostile clients against the real server: open-relay tricks (source routes, `%` and `!`
//! hacks, quoted local parts, case and trailing-dot games, address literals) and SMTP
//! smuggling (non-standard DATA terminators hiding a second message).

mod common;

use common::{Listener, SmtpClient, TestServer, eventually, message};
use mxgate::metrics::{INBOUND_MESSAGES, INBOUND_RECIPIENTS};
use mxgate::reply;

#[track_caller]
fn expect_reply(r: &common::SmtpReply, want: &reply::Reply) {
    r.expect(
        want.code,
        format!("{} {}", want.status, want.text).trim_start(),
    );
}

async fn in_transaction(srv: &TestServer) -> SmtpClient {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    c
}

#[tokio::test]
async fn rcpt_outside_alias_domains_is_relay_denied_whatever_the_disguise() {
    let srv = TestServer::start("").await;
    let mut c = in_transaction(&srv).await;
    for rcpt in [
        "<victim@elsewhere.test>",
        "<@example.test:victim@elsewhere.test>",
        "<@example.test,@mx.example.test:victim@example.test>",
        "<victim%elsewhere.test@example.test>",
        "<elsewhere.test!victim@example.test>",
        "<\"victim@elsewhere.test\"@example.test>",
        "<\"sales\"@example.test>",
        "<victim@[127.0.0.1]>",
        "<victim@[IPv6:::1]>",
        "<victim@example.test.elsewhere.test>",
        "<victim@elsewhere.test.>",
        "<victim@sub.example.test>",
        "<victim@example.test@elsewhere.test>",
        " <victim@EXAMPLE.test.evil.test>",
    ] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}")).await;
        expect_reply(&r, &reply::RELAY_DENIED);
    }
    // Nothing was accepted, so there is nothing to send.
    expect_reply(&c.cmd("DATA").await, &reply::NO_VALID_RECIPIENTS);
    srv.shutdown().await;
}

#[tokio::test]
async fn case_and_trailing_dot_variants_of_our_domain_are_ours() {
    let srv = TestServer::start("").await;
    let mut c = in_transaction(&srv).await;
    for rcpt in [
        "<SALES@EXAMPLE.TEST>",
        "<sales@example.test.>",
        "<Sales@Example.Test>",
    ] {
        expect_reply(
            &c.cmd(&format!("RCPT TO:{rcpt}")).await,
            &reply::RECIPIENT_OK,
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn relay_attempts_are_counted_as_rejected_recipients() {
    let srv = TestServer::start("").await;
    let mut c = in_transaction(&srv).await;
    c.cmd("RCPT TO:<a%b@example.test>").await.expect_code(550);
    c.cmd("RCPT TO:<a@elsewhere.test>").await.expect_code(550);
    let labels = [("result", "rejected"), ("reason", "relay_denied")];
    assert_eq!(srv.metric(INBOUND_RECIPIENTS, &labels).await, Some(2.0));
    srv.shutdown().await;
}

/// Sends a message whose body hides `vector` followed by a complete second transaction,
/// then the real terminator. Exactly one reply (the refusal) must come back, and nothing
/// may be queued.
async fn smuggle(srv: &TestServer, vector: &[u8]) {
    let mut c = in_transaction(srv).await;
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let mut data = b"From: alice@client.test\r\nSubject: first\r\n\r\nfirst body".to_vec();
    data.extend_from_slice(vector);
    data.extend_from_slice(
        b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<support@example.test>\r\nDATA\r\n\
          From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n",
    );
    c.send_raw(&data).await;
    expect_reply(&c.read_reply().await, &reply::BARE_LF);
    // The next reply is VRFY's: no reply was produced for any smuggled command.
    expect_reply(&c.cmd("VRFY x").await, &reply::VRFY_CANNOT_VERIFY);
    // And no transaction is open: the smuggled MAIL did not run.
    expect_reply(
        &c.cmd("RCPT TO:<sales@example.test>").await,
        &reply::NEED_MAIL,
    );
}

#[tokio::test]
async fn smuggling_vectors_never_end_data_nor_yield_a_second_message() {
    let srv = TestServer::start("").await;
    for vector in [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\r\n.\n",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\r",
    ] {
        smuggle(&srv, vector).await;
    }
    let accepted = [("result", "accepted")];
    assert_eq!(
        srv.metric(INBOUND_MESSAGES, &accepted).await,
        None,
        "nothing accepted"
    );
    let labels = [("result", "rejected"), ("reason", "bare_newline")];
    assert_eq!(srv.metric(INBOUND_MESSAGES, &labels).await, Some(6.0));
    assert!(srv.erp.pushes().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn a_proper_message_after_a_refused_one_still_goes_through() {
    let srv = TestServer::start("").await;
    smuggle(&srv, b"\n.\n").await;
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("clean", "fine"),
    )
    .await
    .expect_code(250);
    let pushes = eventually(10, "ERP push", || async {
        let p = srv.erp.pushes();
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(pushes.len(), 1);
    assert!(!String::from_utf8_lossy(&pushes[0].body).contains("smuggled"));
    srv.shutdown().await;
}

#[tokio::test]
async fn bdat_content_is_never_read_as_commands() {
    let srv = TestServer::start("").await;
    let mut c = in_transaction(&srv).await;
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    let chunk = b"Subject: x\r\n\r\n.\r\nMAIL FROM:<evil@x.test>\r\n";
    let mut data = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
    data.extend_from_slice(chunk);
    c.send_raw(&data).await;
    expect_reply(&c.read_reply().await, &reply::QUEUED);
    expect_reply(&c.cmd("VRFY x").await, &reply::VRFY_CANNOT_VERIFY);
    srv.shutdown().await;
}

/// STYLE §7: the fuzz corpora replay on stable through the same entry points as the fuzz
/// targets (`fuzz/fuzz_targets/session_command.rs`, `session_body.rs`).
#[test]
fn fuzz_corpora_replay_through_the_session_parsers() {
    use mxgate::session::body::DataDecoder;
    use mxgate::session::command::{self, Command};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let read = |name: &str| -> Vec<Vec<u8>> {
        std::fs::read_dir(root.join(name))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let commands = read("session_command");
    assert!(!commands.is_empty(), "seed corpus present");
    for input in commands {
        if let Ok(Command::Rcpt(r)) = command::parse(&input) {
            assert!(!r.to.local.contains(['%', '!', '"', '@']) && !r.to.domain.starts_with('['));
        }
    }
    for input in read("session_body") {
        let mut d = DataDecoder::new(1 << 16);
        if let Some(n) = d.feed(&input) {
            assert!(input[..n].ends_with(b"\r\n.\r\n") || input[..n] == *b".\r\n");
        }
        let _ = d.finish();
    }
}
