//! Retention purge at scale (issue 11): N messages are enqueued and delivered through the
//! library API (`Queue::enqueue`, `Queue::record`), then the clock passes `queue.retention`
//! and the background purge (`Queue::run_retention`) deletes them and compacts. Prints the
//! data dir's size (du) empty / full / after the purge, how long the purge took, and
//! enqueue latency (p50/p99/max) without a purge and while one runs.
//!
//! Run (release): `cargo bench --bench retention_purge`
//! Options (env): `PURGE_N` messages (default 1000000), `PURGE_BODY` bytes of random
//! base64 text per message (default 2048),
//! `PURGE_DIR` parent of the temp data dir (default the target dir: a real disk).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use mxgate::clock::Clock;
use mxgate::config::{HumanDuration, QueueConfig};
use mxgate::envelope::{Address, Destination, ListenerKind, ReversePath};
use mxgate::metrics::Metrics;
use mxgate::queue::{NewMessage, Outcome, Queue, RcptState};
use tokio_util::sync::CancellationToken;

/// Enqueues in flight at once: group commit shares one fsync among them.
const IN_FLIGHT: usize = 256;
const LATENCY_SAMPLES: usize = 2000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A body of `len` random base64-alphabet bytes: real mail bodies (base64 attachments,
/// compressed text) don't shrink under RocksDB's block compression, and a repeated
/// filler would make "full" look 10× smaller than a real queue.
fn random_body(len: usize) -> Vec<u8> {
    use rand::Rng;
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..len).map(|_| B64[rng.random_range(0..64)]).collect()
}

fn message(body: &[u8]) -> NewMessage {
    let to = Address::parse("sales@example.test").expect("addr");
    NewMessage {
        listener: ListenerKind::Inbound,
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "client.test".into(),
        mail_from: ReversePath::Address(Address::parse("alice@client.test").expect("addr")),
        recipients: vec![(
            to,
            Destination::Route {
                route: "crm".into(),
                alias: "sales@example.test".into(),
                thread: None,
                detail: None,
            },
        )],
        body: body.to_vec(),
    }
}

/// `du -sk` of `dir`, in bytes (what the filesystem holds, as an operator measures it).
fn du(dir: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(dir)
        .output()
        .expect("du");
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .expect("du output");
    kib * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Enqueues and delivers `n` messages, `IN_FLIGHT` at a time.
async fn fill(q: &Queue, n: usize, body: &[u8]) {
    let sent = Outcome::Sent {
        reply: "HTTP 200 OK".into(),
    };
    let mut done = 0;
    while done < n {
        let k = IN_FLIGHT.min(n - done);
        let jobs = (0..k).map(|_| {
            let (q, m, sent) = (q.clone(), message(&random_body(body.len())), sent.clone());
            tokio::spawn(async move {
                let id = q.enqueue(m).await.expect("enqueue");
                q.record(id, 0, &sent).await.expect("record");
            })
        });
        for j in futures::future::join_all(jobs).await {
            j.expect("join");
        }
        done += k;
        if done % 100_000 == 0 {
            eprintln!("  {done} delivered");
        }
    }
}

/// Latency of one enqueue at a time (a session's view), `LATENCY_SAMPLES` times.
async fn enqueue_latency(q: &Queue, body: &[u8]) -> String {
    let mut t = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        q.enqueue(message(body)).await.expect("enqueue");
        t.push(start.elapsed());
    }
    t.sort();
    let p = |q: f64| t[((t.len() as f64 - 1.0) * q) as usize];
    format!("p50 {:?}  p99 {:?}  max {:?}", p(0.5), p(0.99), p(1.0))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("PURGE_N", 1_000_000);
    let body = vec![b'x'; env("PURGE_BODY", 2048)];
    let parent = std::env::var("PURGE_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    let tmp = tempfile::tempdir_in(parent).expect("tempdir");
    let dir = tmp.path().join("queue");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(n, &body, &dir));
}

async fn run(n: usize, body: &[u8], dir: &Path) {
    let cfg = QueueConfig {
        retention: HumanDuration::secs(3600),
        ..QueueConfig::default()
    };
    let clock = Clock::system();
    let q = Queue::open(dir, cfg, clock.clone(), Metrics::new()).expect("open");
    let stop = CancellationToken::new();
    let purge = tokio::spawn(q.clone().run_retention(stop.clone()));
    let empty = du(dir);

    let started = Instant::now();
    fill(&q, n, body).await;
    eprintln!("enqueued+delivered {n} in {:?}", started.elapsed());
    let idle = enqueue_latency(&q, body).await;
    let full = du(dir);

    // Everything finished, including the latency probes, is now past its retention.
    let before = q.retention_progress();
    clock.advance(Duration::from_secs(2 * 3600));
    let started = Instant::now();
    let during = enqueue_latency(&q, body).await;
    let total = (n + 2 * LATENCY_SAMPLES) as u64;
    // Deliver the probes too, so every message in the store is due.
    for m in q.list(Some(RcptState::Queued), usize::MAX) {
        let sent = Outcome::Sent {
            reply: "HTTP 200 OK".into(),
        };
        q.record(m.id, 0, &sent).await.expect("record");
    }
    clock.advance(Duration::from_secs(2 * 3600));
    loop {
        let p = q.retention_progress();
        if p.purged - before.purged >= total && p.compactions > before.compactions {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let after = du(dir);
    stop.cancel();
    purge.await.expect("purge task");
    assert!(q.list(None, 10).is_empty(), "messages left after the purge");
    q.close();
    let closed = du(dir);

    println!("retention_purge: {n} messages of {} B body", body.len());
    println!("  data dir empty:        {}", mib(empty));
    println!("  data dir full:         {}", mib(full));
    println!("  purge + compaction:    {took:?}");
    println!(
        "  data dir after purge:  {} (closed: {})",
        mib(after),
        mib(closed)
    );
    println!("  enqueue latency idle:         {idle}");
    println!("  enqueue latency during purge: {during}");
}
