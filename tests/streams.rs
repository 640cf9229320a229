//! Streams (issue 6 item 5): each submitted message is `transactional` or `mass` (by the
//! `X-Mxgate-Stream` header, which is removed, or by sender config), the type is stored with
//! the message, and mass mail only ever holds its share of the delivery concurrency — so a
//! transactional message queued behind 10,000 mass messages whose smart host hangs is still
//! delivered at once.

mod common;

use std::sync::{Arc, Mutex};

use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::{Erp, Listener, TestServer, eventually};
use mxgate::envelope::{Address, ListenerKind, ReversePath};
use mxgate::queue::{NewMessage, QueuedMessage, RcptState, Stream};
use mxgate::routing::Destination;
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

fn raw(from: &str, to: &str, subject: &str, stream: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nX-Mxgate-Stream: {stream}\r\nMessage-ID: <{subject}@erp.test>\r\n\r\nHello\r\n"
    )
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
        &raw("news@example.test", "reader0@remote.test", "news-0", "mass"),
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
                body: raw("news@example.test", &to, &format!("news-{i}"), "mass").into_bytes(),
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
        &raw(
            "shop@example.test",
            "customer@remote.test",
            "invoice",
            "transactional",
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
