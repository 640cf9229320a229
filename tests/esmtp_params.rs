//! ESMTP parameters end to end (issue 17 item 4): what an ERP gives with MAIL and RCPT on
//! submission (SMTPUTF8, BODY, DSN's RET/ENVID/NOTIFY/ORCPT, REQUIRETLS) is stored with
//! the message, passed to a next hop that offers it, and honoured in mxgate's own DSNs.
//! The next hop is a real SMTP server on loopback that offers a chosen set of EHLO
//! keywords and records every command line it gets.

mod common;

use std::sync::{Arc, Mutex};

use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::user_toml;
use common::{Listener, TestServer, eventually};
use mxgate::envelope::esmtp::{BodyType, Notify, Ret};
use mxgate::queue::{QueuedMessage, RcptState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A next hop offering exactly `keywords`, plaintext, that accepts everything and keeps
/// the transcript of the client's command lines and each message's content.
struct Hop {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Hop {
    async fn start(keywords: &[&str]) -> Hop {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hop");
        let port = listener.local_addr().expect("addr").port();
        let mut ehlo = String::from("250-hop.test\r\n");
        for k in keywords {
            ehlo.push_str(&format!("250-{k}\r\n"));
        }
        ehlo.push_str("250 SIZE 10000000\r\n");
        let hop = Hop {
            port,
            lines: Arc::default(),
            messages: Arc::default(),
            stop: CancellationToken::new(),
        };
        let (lines, messages, stop) = (hop.lines.clone(), hop.messages.clone(), hop.stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let (lines, messages, ehlo) = (lines.clone(), messages.clone(), ehlo.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve(tcp, ehlo, lines, messages) => {}
                    }
                });
            }
        });
        hop
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    fn line(&self, verb: &str) -> String {
        self.lines()
            .into_iter()
            .find(|l| l.to_ascii_uppercase().starts_with(verb))
            .unwrap_or_else(|| panic!("no {verb} in {:?}", self.lines()))
    }

    async fn wait_message(&self) -> String {
        eventually(20, "a message at the hop", || async {
            let m = self.messages.lock().expect("messages");
            m.first().map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .await
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    ehlo: String,
    lines: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
) -> std::io::Result<()> {
    let mut io = BufReader::new(tcp);
    io.write_all(b"220 hop.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        lines.lock().expect("lines").push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            ehlo.clone()
        } else if upper == "DATA" {
            io.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            }
            messages.lock().expect("messages").push(data);
            "250 2.0.0 Ok: queued as HOP1\r\n".into()
        } else if let Some(n) = upper.strip_prefix("BDAT ") {
            let size: usize = n
                .split(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut data = vec![0; size];
            io.read_exact(&mut data).await?;
            messages.lock().expect("messages").push(data);
            "250 2.0.0 Ok: queued as HOP1\r\n".into()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "250 2.0.0 OK\r\n".into()
        };
        io.write_all(reply.as_bytes()).await?;
        io.flush().await?;
    }
}

/// Submission user `odoo` for example.test, relaying through one smart host on `port`.
fn relay_via(port: u16) -> String {
    format!(
        "{}[[relay.smarthosts]]\nname = \"hop\"\nhost = \"127.0.0.1\"\nport = {port}\npriority = 10\nsecurity = \"none\"\n",
        user_toml(&["example.test"])
    )
}

/// [`common::submit::submit_with`] to the server's submission listener.
async fn submit_with(srv: &TestServer, mail: &str, rcpts: &[&str], body: &str, bdat: bool) {
    let addr = srv.addr(Listener::Submission);
    common::submit::submit_with(addr, mail, rcpts, body, bdat).await;
}

fn body(subject: &str, text: &str) -> String {
    format!(
        "From: sales@example.test\r\nTo: bob@remote.test\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
    )
}

/// The stored message from sales@ once recipient `idx` is in `state`.
async fn wait_state(srv: &TestServer, idx: usize, state: RcptState) -> QueuedMessage {
    let queue = srv.running().queue.clone();
    eventually(20, &format!("recipient {idx} {state:?}"), || {
        let q = queue.clone();
        async move {
            q.list(None, 1000).into_iter().find(|m| {
                m.mail_from == "sales@example.test"
                    && m.recipients.get(idx).is_some_and(|r| r.state == state)
            })
        }
    })
    .await
}

/// DSNs mxgate queued (null sender), as the ERP received them once there are `n`.
async fn dsns(srv: &TestServer, n: usize) -> Vec<String> {
    eventually(20, &format!("{n} DSN(s) at the ERP"), || async {
        let got: Vec<String> = srv
            .erp
            .pushes()
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .filter(|b| b.contains("multipart/report"))
            .collect();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// Null-sender messages in the queue: the DSNs mxgate owes (written with the outcome).
fn queued_dsns(srv: &TestServer) -> usize {
    let all = srv.running().queue.list(None, 1000);
    all.iter().filter(|m| m.mail_from.is_empty()).count()
}

#[tokio::test]
async fn parameters_are_stored_and_reach_a_hop_that_offers_them() {
    let hop = Hop::start(&["PIPELINING", "8BITMIME", "SMTPUTF8", "DSN"]).await;
    let srv = TestServer::start(&relay_via(hop.port)).await;
    let ehlo = srv
        .smtp(Listener::Submission)
        .await
        .cmd("EHLO erp.test")
        .await;
    assert!(ehlo.has_line("DSN"), "{}", ehlo.text());
    submit_with(
        &srv,
        "<sales@example.test> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=inv+2B42",
        &["<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.test"],
        &body("Grüße", "Schöne Grüße"),
        false,
    )
    .await;
    let got = hop.wait_message().await;
    assert!(got.contains("Schöne Grüße"), "{got}");
    let mail = hop.line("MAIL FROM:");
    for p in [
        " SMTPUTF8",
        " BODY=8BITMIME",
        " RET=HDRS",
        " ENVID=inv+2B42",
    ] {
        assert!(mail.contains(p), "{p} missing in {mail}");
    }
    let rcpt = hop.line("RCPT TO:");
    assert!(
        rcpt.ends_with("<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.test"),
        "{rcpt}"
    );
    let m = wait_state(&srv, 0, RcptState::Sent).await;
    assert!(m.esmtp.smtputf8);
    assert_eq!(m.esmtp.body, BodyType::EightBitMime);
    assert_eq!(m.esmtp.ret, Some(Ret::Hdrs));
    assert_eq!(m.esmtp.envid.as_deref(), Some("inv+2B42"));
    assert_eq!(
        m.recipients[0].esmtp.notify,
        Notify::parse("SUCCESS,FAILURE")
    );
    // NOTIFY=SUCCESS: the hop's own report would come back to our VERP sender, so the
    // sender hears it from mxgate.
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Action: relayed"), "{dsn}");
    assert!(dsn.contains("Original-Envelope-Id: inv+42"), "{dsn}");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_hop_without_the_extensions_gets_bare_commands_and_success_is_reported_as_relayed() {
    let hop = Hop::start(&["PIPELINING"]).await;
    let srv = TestServer::start(&relay_via(hop.port)).await;
    // Declared 8BITMIME and SMTPUTF8, but 7-bit content and ASCII addresses: no need.
    submit_with(
        &srv,
        "<sales@example.test> SMTPUTF8 BODY=8BITMIME ENVID=order+2D7",
        &["<bob@remote.test> NOTIFY=SUCCESS ORCPT=rfc822;Bob+2Bshop@remote.test"],
        &body("Order", "plain ascii"),
        false,
    )
    .await;
    hop.wait_message().await;
    let mail = hop.line("MAIL FROM:");
    assert!(mail.ends_with("@example.test>"), "no parameters: {mail}");
    assert_eq!(hop.line("RCPT TO:"), "RCPT TO:<bob@remote.test>");
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Action: relayed"), "{dsn}");
    assert!(dsn.contains("Status: 2.0.0"), "{dsn}");
    assert!(dsn.contains("Original-Envelope-Id: order-7"), "{dsn}");
    assert!(
        dsn.contains("Original-Recipient: rfc822;Bob+shop@remote.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; bob@remote.test"),
        "{dsn}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn non_ascii_recipient_to_a_hop_without_smtputf8_bounces_with_5_6_7() {
    let hop = Hop::start(&["PIPELINING", "8BITMIME"]).await;
    let srv = TestServer::start(&relay_via(hop.port)).await;
    submit_with(
        &srv,
        "<sales@example.test> SMTPUTF8",
        &["<jürgen@remote.test>"],
        &body("Hallo", "hallo"),
        false,
    )
    .await;
    let m = wait_state(&srv, 0, RcptState::Bounced).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("553 5.6.7"), "{last}");
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Status: 5.6.7"), "{dsn}");
    assert!(
        !hop.lines().iter().any(|l| l.starts_with("MAIL")),
        "nothing sent: {:?}",
        hop.lines()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn eight_bit_content_to_a_hop_without_8bitmime_bounces_with_5_6_3() {
    let hop = Hop::start(&["PIPELINING", "SMTPUTF8"]).await;
    let srv = TestServer::start(&relay_via(hop.port)).await;
    submit_with(
        &srv,
        "<sales@example.test> BODY=8BITMIME",
        &["<bob@remote.test>"],
        &body("Grüße", "Schöne Grüße"),
        false,
    )
    .await;
    let m = wait_state(&srv, 0, RcptState::Bounced).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("554 5.6.3"), "{last}");
    assert!(!hop.lines().iter().any(|l| l.starts_with("MAIL")));
    srv.shutdown().await;
}

#[tokio::test]
async fn binarymime_goes_by_bdat_to_a_hop_with_chunking() {
    let hop = Hop::start(&["PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME"]).await;
    let srv = TestServer::start(&relay_via(hop.port)).await;
    submit_with(
        &srv,
        "<sales@example.test> BODY=BINARYMIME",
        &["<bob@remote.test>"],
        &body("Binary", "payload"),
        true,
    )
    .await;
    let got = hop.wait_message().await;
    assert!(got.contains("payload"), "{got}");
    assert!(hop.line("MAIL FROM:").ends_with(" BODY=BINARYMIME"));
    assert!(
        hop.lines()
            .iter()
            .any(|l| l.starts_with("BDAT ") && l.ends_with(" LAST")),
        "{:?}",
        hop.lines()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn notify_never_gets_no_dsn_and_ret_hdrs_returns_no_body() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["550 5.1.1 User unknown", "550 5.1.1 User unknown"]);
    let srv = TestServer::start(&relay_via(sink.addr.port())).await;
    submit_with(
        &srv,
        "<sales@example.test> RET=HDRS",
        &[
            "<quiet@remote.test> NOTIFY=NEVER",
            "<loud@remote.test> NOTIFY=FAILURE,DELAY",
        ],
        &body("Invoice", "secret body text"),
        false,
    )
    .await;
    wait_state(&srv, 0, RcptState::Bounced).await;
    wait_state(&srv, 1, RcptState::Bounced).await;
    // Each DSN is written in the same batch as its bounce: both final, one DSN owed.
    assert_eq!(queued_dsns(&srv), 1);
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(
        dsn.contains("Final-Recipient: rfc822; loud@remote.test"),
        "{dsn}"
    );
    assert!(!dsn.contains("quiet@remote.test"), "{dsn}");
    assert!(dsn.contains("text/rfc822-headers"), "{dsn}");
    assert!(dsn.contains("Subject: Invoice"), "{dsn}");
    assert!(!dsn.contains("secret body text"), "RET=HDRS: {dsn}");
    srv.shutdown().await;
}

#[tokio::test]
async fn ret_full_returns_the_whole_message() {
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["550 5.1.1 <gone@remote.test>: User unknown"]);
    let srv = TestServer::start(&relay_via(sink.addr.port())).await;
    submit_with(
        &srv,
        "<sales@example.test> RET=FULL",
        &["<gone@remote.test>"],
        &body("Invoice", "the full body text"),
        false,
    )
    .await;
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Content-Type: message/rfc822"), "{dsn}");
    assert!(dsn.contains("the full body text"), "{dsn}");
    srv.shutdown().await;
}

#[tokio::test]
async fn requiretls_is_offered_and_accepted_only_over_tls() {
    let srv = TestServer::start(&user_toml(&["example.test"])).await;
    let mut plain = srv.smtp(Listener::Submission).await;
    let ehlo = plain.cmd("EHLO erp.test").await;
    assert!(!ehlo.has_line("REQUIRETLS"), "{}", ehlo.text());
    plain
        .cmd("MAIL FROM:<sales@example.test> REQUIRETLS")
        .await
        .expect(555, "5.5.4");
    let mut tls = srv.smtp(Listener::Submission).await;
    tls.cmd("EHLO erp.test").await;
    tls.cmd("STARTTLS").await.expect_code(220);
    let mut tls = tls.upgrade_tls().await;
    let ehlo = tls.cmd("EHLO erp.test").await;
    assert!(ehlo.has_line("REQUIRETLS"), "{}", ehlo.text());
    assert!(ehlo.has_line("DSN"), "{}", ehlo.text());
    srv.shutdown().await;
}

#[tokio::test]
async fn requiretls_fails_with_5_7_30_when_no_hop_has_verified_tls_and_requiretls() {
    // A plaintext hop (it even lists REQUIRETLS) and one with STARTTLS whose certificate
    // no trusted CA signed: neither may carry it, and nothing falls back to them.
    let plain = Hop::start(&["PIPELINING", "8BITMIME", "REQUIRETLS"]).await;
    let self_signed = Sink::start(SinkOptions::default()).await;
    let extra = format!(
        "{}[[relay.smarthosts]]\nname = \"tls\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 20\nsecurity = \"starttls\"\ntls_verify = false\n",
        relay_via(plain.port),
        self_signed.addr.port()
    );
    let srv = TestServer::start(&extra).await;
    submit_with(
        &srv,
        "<sales@example.test> REQUIRETLS",
        &["<bob@remote.test>"],
        &body("Secret", "only over TLS"),
        false,
    )
    .await;
    let m = wait_state(&srv, 0, RcptState::Bounced).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("550 5.7.30"), "{last}");
    assert_eq!(m.recipients[0].attempts, 1, "no retry: {last}");
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Status: 5.7.30"), "{dsn}");
    assert!(!plain.lines().iter().any(|l| l.starts_with("MAIL")));
    assert_eq!(self_signed.transactions(), 0);
    srv.shutdown().await;
}

/// A STARTTLS smart host offering REQUIRETLS whose certificate a test CA signed, and
/// the config relaying through it: its `ca_file` set to that CA when `trusted`, absent
/// otherwise (the certificate is then checked against the webpki roots only).
async fn requiretls_smarthost(
    dir: &std::path::Path,
    trusted: bool,
) -> (Sink, common::test_ca::TestCa, String) {
    let ca = common::test_ca::TestCa::new(dir, "relay");
    let sink = Sink::start_with_certificate(
        SinkOptions {
            tls: SinkTls::StartTls,
            auth: None,
        },
        ca.acceptor(),
    )
    .await;
    sink.offer("REQUIRETLS");
    let ca_file = if trusted {
        format!("ca_file = \"{}\"\n", ca.pem_path.display())
    } else {
        String::new()
    };
    let toml = format!(
        "{}[[relay.smarthosts]]\nname = \"private\"\nhost = \"127.0.0.1\"\nport = {}\n\
         priority = 10\nsecurity = \"starttls\"\n{ca_file}",
        user_toml(&["example.test"]),
        sink.addr.port()
    );
    (sink, ca, toml)
}

#[tokio::test]
async fn requiretls_mail_reaches_a_smarthost_whose_private_ca_is_in_its_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sink, _ca, toml) = requiretls_smarthost(dir.path(), true).await;
    let srv = TestServer::start(&toml).await;
    submit_with(
        &srv,
        "<sales@example.test> REQUIRETLS",
        &["<bob@remote.test>"],
        &body("Secret", "only over TLS"),
        false,
    )
    .await;
    let got = eventually(20, "the message at the smart host", || async {
        sink.received().into_iter().next()
    })
    .await;
    assert!(got.tls, "delivered over TLS");
    assert_eq!(got.rcpts, ["bob@remote.test"]);
    assert!(
        got.mail_line.ends_with(" REQUIRETLS"),
        "REQUIRETLS carried on: {}",
        got.mail_line
    );
    let m = wait_state(&srv, 0, RcptState::Sent).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("250 "), "{last}");
    srv.shutdown().await;
}

#[tokio::test]
async fn requiretls_mail_bounces_5_7_30_when_the_smarthosts_ca_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sink, _ca, toml) = requiretls_smarthost(dir.path(), false).await;
    let srv = TestServer::start(&toml).await;
    submit_with(
        &srv,
        "<sales@example.test> REQUIRETLS",
        &["<bob@remote.test>"],
        &body("Secret", "only over TLS"),
        false,
    )
    .await;
    let m = wait_state(&srv, 0, RcptState::Bounced).await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("550 5.7.30"), "{last}");
    let dsn = dsns(&srv, 1).await.remove(0);
    assert!(dsn.contains("Status: 5.7.30"), "{dsn}");
    assert_eq!(sink.transactions(), 0, "no MAIL at the smart host");
    srv.shutdown().await;
}
