//! Streams (issue 6 item 5): each submitted message is `transactional` or `mass` (by the
//! `X-Mxgate-Stream` header, which is removed, or by sender config), the type is stored with
//! the message, and mass mail only ever holds its share of the delivery concurrency — so a
//! transactional message queued behind 10,000 mass messages whose smart host hangs is still
//! delivered at once. Each stream may leave from its own source IP and mass mail through its
//! own smart hosts (`mass_source_ip`, `transactional_source_ip`, `mass_smarthosts`).

mod common;

use std::sync::{Arc, Mutex};

use common::messages::erp_mail;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::{Erp, Listener, TestServer, eventually};
use mxgate::envelope::{Address, Destination, ListenerKind, ReversePath, Stream};
use mxgate::metrics::MESSAGES_DELIVERED;
use mxgate::queue::{NewMessage, QueuedMessage, RcptState};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const MASS: usize = 10_000;

/// A "smart host" that accepts connections and never says a word: every attempt to it
/// hangs (holding its delivery slot) until [`Hang::release`].
struct Hang {
    port: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: CancellationToken,
}

impl Hang {
    async fn start() -> Hang {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (h, s) = (held.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    Ok((tcp, _)) = l.accept() => h.lock().expect("held").push(tcp),
                }
            }
        });
        Hang { port, held, stop }
    }

    fn connections(&self) -> usize {
        self.held.lock().expect("held").len()
    }

    /// Stops listening and closes the held connections: the attempts fail over.
    fn release(&self) {
        self.stop.cancel();
        self.held.lock().expect("held").clear();
    }
}

fn by_from(srv: &TestServer, from: &str) -> Vec<QueuedMessage> {
    srv.running()
        .queue
        .list(None, 100_000)
        .into_iter()
        .filter(|m| m.mail_from == from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_message_is_not_delayed_by_10000_queued_mass_messages() {
    let hang = Hang::start().await;
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    // Mass mail from news@ goes to the hanging host first; everything else to the sink.
    let extra = format!(
        "{}[streams]\nmass_share_percent = 50\n\
         [[relay.smarthosts]]\nname = \"bulk\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 1\nsecurity = \"none\"\nfrom_filter = \"news@example.test\"\n\
         [[relay.smarthosts]]\nname = \"main\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 10\nsecurity = \"none\"\n",
        user_toml(&["example.test"]),
        hang.port,
        sink.addr.port()
    );
    let srv = TestServer::start_configured(Erp::start().await, &extra, |c| {
        c.queue.concurrency = 2;
    })
    .await;

    // A mass message through real submission: the header makes it mass.
    submit(
        srv.addr(Listener::Submission),
        "news@example.test",
        &["reader0@remote.test"],
        &erp_mail(
            "news@example.test",
            "reader0@remote.test",
            "news-0",
            Some("mass"),
        ),
    )
    .await
    .expect("mass submitted");
    eventually(20, "the mass attempt hangs", || async {
        (hang.connections() >= 1).then_some(())
    })
    .await;
    let first = by_from(&srv, "news@example.test");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].stream, Stream::Mass);

    // 10,000 more mass messages queued behind it.
    let queue = srv.running().queue.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 1..=MASS {
        let q = queue.clone();
        tasks.spawn(async move {
            let to = format!("reader{i}@remote.test");
            let msg = NewMessage {
                listener: ListenerKind::Submission,
                peer_ip: "127.0.0.1".parse().expect("ip"),
                helo: "erp.test".into(),
                mail_from: ReversePath::Address(
                    Address::parse("news@example.test").expect("address"),
                ),
                recipients: vec![(Address::parse(&to).expect("address"), Destination::Relay)],
                body: erp_mail("news@example.test", &to, &format!("news-{i}"), Some("mass"))
                    .into_bytes(),
            };
            q.enqueue_stream(msg, Stream::Mass).await.expect("enqueued");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("enqueue task");
    }

    // Then one transactional message: delivered while every mass message still waits.
    submit(
        srv.addr(Listener::Submission),
        "shop@example.test",
        &["customer@remote.test"],
        &erp_mail(
            "shop@example.test",
            "customer@remote.test",
            "invoice",
            Some("transactional"),
        ),
    )
    .await
    .expect("transactional submitted");
    let sent = eventually(30, "transactional message sent", || async {
        by_from(&srv, "shop@example.test")
            .into_iter()
            .find(|m| m.recipients[0].state == RcptState::Sent)
    })
    .await;
    assert_eq!(sent.stream, Stream::Transactional);
    let mass = by_from(&srv, "news@example.test");
    assert_eq!(mass.len(), MASS + 1);
    let mass_sent = mass
        .iter()
        .filter(|m| m.recipients[0].state == RcptState::Sent)
        .count();
    assert_eq!(mass_sent, 0, "no mass message went out before the invoice");
    assert_eq!(
        hang.connections(),
        1,
        "mass mail holds only its share (1 of 2 slots)"
    );
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["customer@remote.test"]);
    assert!(
        !got[0].data.to_ascii_lowercase().contains("x-mxgate-stream"),
        "the stream header is removed: {}",
        got[0].data
    );

    // Release the bulk host: mass mail fails over to the sink, still one slot at a time.
    hang.release();
    let news0 = eventually(30, "first mass message at the sink", || async {
        sink.received()
            .into_iter()
            .find(|r| r.rcpts == ["reader0@remote.test"])
    })
    .await;
    assert!(!news0.data.to_ascii_lowercase().contains("x-mxgate-stream"));
    srv.shutdown().await;
}

#[test]
fn mass_share_and_sender_rules() {
    let mut s = mxgate::config::StreamsConfig::default();
    assert_eq!(s.mass_slots(1), 1);
    assert_eq!(s.mass_slots(2), 1);
    assert_eq!(s.mass_slots(16), 8);
    s.mass_share_percent = 100;
    assert_eq!(s.mass_slots(16), 15, "transactional always keeps a slot");
    s.mass_users = vec!["newsletter".into()];
    s.mass_from = vec!["@news.example.test".into(), "promo@example.test".into()];
    assert!(s.mass_by_sender(Some("newsletter"), "a@example.test"));
    assert!(s.mass_by_sender(None, "x@News.Example.test"));
    assert!(s.mass_by_sender(Some("odoo"), "promo@example.test"));
    assert!(!s.mass_by_sender(Some("odoo"), "shop@example.test"));
    s.mass_share_percent = 0;
    assert!(!s.problems().is_empty());
}

// --- Per-stream source IP and smart hosts ---------------------------------------------------

fn plain_sink() -> SinkOptions {
    SinkOptions {
        tls: SinkTls::None,
        auth: None,
    }
}

/// `[streams]` lines plus smart hosts `(name, port, priority)`, with the submission user.
fn stream_toml(streams: &str, hosts: &[(&str, u16, u32)]) -> String {
    let mut t = format!("{}[streams]\n{streams}\n", user_toml(&["example.test"]));
    for (name, port, priority) in hosts {
        t.push_str(&format!(
            "[[relay.smarthosts]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\npriority = {priority}\nsecurity = \"none\"\n"
        ));
    }
    t
}

/// Submits one message of `stream` from `from` to `to` through the submission listener.
async fn send_stream(srv: &TestServer, from: &str, to: &str, subject: &str, stream: &str) {
    submit(
        srv.addr(Listener::Submission),
        from,
        &[to],
        &erp_mail(from, to, subject, Some(stream)),
    )
    .await
    .unwrap_or_else(|e| panic!("{subject} submitted: {e}"));
}

async fn arrived(sink: &Sink, to: &str) -> common::sink::Received {
    eventually(30, &format!("{to} at the sink"), || async {
        sink.received().into_iter().find(|r| r.rcpts == [to])
    })
    .await
}

#[tokio::test]
async fn each_stream_leaves_from_its_own_source_ip() {
    let sink = Sink::start(plain_sink()).await;
    let extra = stream_toml(
        "mass_source_ip = \"127.0.0.2\"\ntransactional_source_ip = \"127.0.0.1\"",
        &[("main", sink.addr.port(), 10)],
    );
    let srv = TestServer::start_configured(Erp::start().await, &extra, |_| {}).await;

    // Twice each, so a pooled connection of one stream would be there for the other.
    for i in 0..2 {
        let (m, t) = (
            format!("reader{i}@remote.test"),
            format!("buyer{i}@remote.test"),
        );
        send_stream(&srv, "news@example.test", &m, &format!("news-{i}"), "mass").await;
        assert_eq!(arrived(&sink, &m).await.peer.to_string(), "127.0.0.2");
        send_stream(
            &srv,
            "shop@example.test",
            &t,
            &format!("inv-{i}"),
            "transactional",
        )
        .await;
        assert_eq!(arrived(&sink, &t).await.peer.to_string(), "127.0.0.1");
    }
    assert_eq!(
        srv.config.streams.source_ip(Stream::Mass),
        Some("127.0.0.2".parse().expect("ip"))
    );

    // The `sending_ip` of the delivery metrics is the stream's source.
    // Each series' whole label set: one series, not a sum.
    for (email_type, ip) in [("mass", "127.0.0.2"), ("transactional", "127.0.0.1")] {
        let labels = [
            ("sending_domain", "example.test"),
            ("provider", "other"),
            ("email_type", email_type),
            ("sending_ip", ip),
        ];
        // The sink has the message before the outcome's report counts it: poll.
        eventually(
            20,
            &format!("2 {email_type} deliveries from {ip}"),
            || async { (srv.metric(MESSAGES_DELIVERED, &labels).await == Some(2.0)).then_some(()) },
        )
        .await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn mass_smarthosts_carry_only_mass_mail() {
    let bulk = Sink::start(plain_sink()).await;
    let main = Sink::start(plain_sink()).await;
    // "bulk" has the better priority: without the stream split it would take everything.
    let extra = stream_toml(
        "mass_smarthosts = [\"bulk\"]",
        &[
            ("bulk", bulk.addr.port(), 1),
            ("main", main.addr.port(), 10),
        ],
    );
    let srv = TestServer::start_configured(Erp::start().await, &extra, |_| {}).await;
    for i in 0..2 {
        let (m, t) = (
            format!("reader{i}@remote.test"),
            format!("buyer{i}@remote.test"),
        );
        send_stream(&srv, "news@example.test", &m, &format!("news-{i}"), "mass").await;
        send_stream(
            &srv,
            "shop@example.test",
            &t,
            &format!("inv-{i}"),
            "transactional",
        )
        .await;
        arrived(&bulk, &m).await;
        arrived(&main, &t).await;
    }
    let rcpts = |s: &Sink| -> Vec<String> {
        let mut r: Vec<String> = s.received().into_iter().flat_map(|r| r.rcpts).collect();
        r.sort();
        r
    };
    assert_eq!(rcpts(&bulk), ["reader0@remote.test", "reader1@remote.test"]);
    assert_eq!(rcpts(&main), ["buyer0@remote.test", "buyer1@remote.test"]);
    for m in by_from(&srv, "news@example.test") {
        let reply = m.recipients[0].last_reply.clone().unwrap_or_default();
        assert!(reply.contains("[smarthost bulk]"), "{reply}");
    }

    // The bulk host down: mass mail waits for it, it never falls over to "main".
    drop(bulk);
    send_stream(
        &srv,
        "news@example.test",
        "late@remote.test",
        "news-late",
        "mass",
    )
    .await;
    let deferred = eventually(30, "mass message deferred", || async {
        by_from(&srv, "news@example.test").into_iter().find(|m| {
            m.recipients[0].address == "late@remote.test"
                && m.recipients[0].state == RcptState::Deferred
                && m.recipients[0].attempts >= 2
        })
    })
    .await;
    let reply = deferred.recipients[0]
        .last_reply
        .clone()
        .unwrap_or_default();
    assert!(reply.contains("[smarthost bulk]"), "{reply}");
    assert!(!reply.contains("main"), "{reply}");
    assert_eq!(
        main.received().len(),
        2,
        "no mass mail on the transactional host"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_source_ip_this_host_does_not_have_defers_the_mail() {
    let sink = Sink::start(plain_sink()).await;
    let extra = stream_toml(
        "mass_source_ip = \"192.0.2.1\"",
        &[("main", sink.addr.port(), 10)],
    );
    let srv = TestServer::start_configured(Erp::start().await, &extra, |_| {}).await;
    send_stream(
        &srv,
        "news@example.test",
        "reader@remote.test",
        "news",
        "mass",
    )
    .await;
    let deferred = eventually(30, "mass message deferred twice", || async {
        by_from(&srv, "news@example.test")
            .into_iter()
            .find(|m| m.recipients[0].state == RcptState::Deferred && m.recipients[0].attempts >= 2)
    })
    .await;
    let reply = deferred.recipients[0]
        .last_reply
        .clone()
        .unwrap_or_default();
    assert!(
        reply.contains("cannot connect from source IP 192.0.2.1"),
        "the reason names the source IP: {reply}"
    );
    assert_eq!(sink.transactions(), 0);
    // Transactional mail (no source IP configured) is not affected.
    send_stream(
        &srv,
        "shop@example.test",
        "buyer@remote.test",
        "inv",
        "transactional",
    )
    .await;
    assert_eq!(
        arrived(&sink, "buyer@remote.test").await.peer.to_string(),
        "127.0.0.1"
    );
    // Nothing lost: the mass message is still queued, still deferred.
    let still = srv.running().queue.get(deferred.id).expect("still queued");
    assert_eq!(still.recipients[0].state, RcptState::Deferred);
    srv.shutdown().await;
}

const BAD_STREAMS: &str = r#"
[relay]
direct_mx = true

[[relay.smarthosts]]
name = "main"
host = "127.0.0.1"

[streams]
mass_source_ip = "127.0.0.300"
transactional_source_ip = "0.0.0.0"
mass_smarthosts = ["main", "nowhere"]
"#;

#[test]
fn stream_source_ips_and_smarthosts_are_validated() {
    let e = mxgate::config::Config::from_toml(BAD_STREAMS, std::path::Path::new("s.toml"))
        .expect_err("invalid");
    let got: Vec<(&str, Option<usize>)> = e
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.line))
        .collect();
    for want in [
        ("streams.mass_source_ip", Some(10)),
        ("streams.transactional_source_ip", Some(11)),
        ("streams.mass_smarthosts[1]", Some(12)),
    ] {
        assert!(got.contains(&want), "{want:?} missing: {e}");
    }
    assert_eq!(got.len(), 3, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("\"127.0.0.300\" is not an IP address"),
        "{text}"
    );
    assert!(text.contains("no smart host named \"nowhere\""), "{text}");

    // Every smart host for mass mail and no direct MX: transactional mail has no route.
    let only = "[[relay.smarthosts]]\nname = \"bulk\"\nhost = \"127.0.0.1\"\n\
                [streams]\nmass_smarthosts = [\"bulk\"]\n";
    let e = mxgate::config::Config::from_toml(only, std::path::Path::new("s.toml"))
        .expect_err("no transactional route");
    assert_eq!(e.problems[0].path, "streams.mass_smarthosts", "{e}");

    // The same through the real `mxgate check-config`.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mxgate.toml");
    std::fs::write(&file, BAD_STREAMS).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .expect("run check-config");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "mxgate.toml:10: streams.mass_source_ip:",
        "mxgate.toml:11: streams.transactional_source_ip:",
        "mxgate.toml:12: streams.mass_smarthosts[1]: no smart host named \"nowhere\"",
    ] {
        assert!(err.contains(want), "{want:?} missing in:\n{err}");
    }
}
