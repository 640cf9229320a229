//! Sender authentication cost, DNS answered from cache (an in-process authoritative server
//! fills the caches on the first message; nothing is asked again after that — "nothing"
//! meaning no query reaches the DNS server; negative answers come from hickory's cache):
//!
//! 1. criterion `auth_verify/rsa2048_spf_dmarc`: one `Verifier::verify` (SPF HELO + MAIL
//!    FROM, DKIM rsa-sha256 over a 4 KiB message, DMARC, ARC, iprev) — messages/s of
//!    verification alone;
//! 2. `inbound load`: the whole inbound path (SMTP, checks, fsync'd enqueue, discard route)
//!    with checks on versus `[auth]` all off, same server config, same signed message,
//!    16 sessions × 250 messages, alternated 3 times; prints the median wall-clock rates,
//!    the median messages per CPU-second of this process (robust when other work shares
//!    the machine) and both ratios (goal ≥ 0.7). Figures go in notes, never in asserts.
//!
//! Run: `cargo bench --bench auth_verify`. `MXGATE_BENCH_SKIP_LOAD=1` / `_SKIP_VERIFY=1`
//! run one part only; `MXGATE_BENCH_ROUNDS=N` alternates on/off N times (default 3).

#[path = "../tests/common/dns.rs"]
#[allow(dead_code)]
mod dns;

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mxgate::auth::{Verifier, keys};
use mxgate::config::{AuthConfig, Config, DkimAlgorithm};
use mxgate::envelope::{Address, ReversePath};
use mxgate::metrics::Metrics;
use mxgate::server::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SESSIONS: usize = 16;
const PER_SESSION: usize = 250;

/// A 4 KiB message from alice@client.test, DKIM-signed (rsa-sha256, 2048 bits) with the key
/// whose record is published in `dns`, plus client.test's SPF and DMARC records.
fn signed_message(dns: &dns::DnsServer, dir: &Path) -> String {
    let path = dir.join("bench.key");
    let key = keys::generate_to(&path, DkimAlgorithm::Rsa).expect("keygen");
    dns.txt("s1._domainkey.client.test", &key.dns_record());
    dns.txt("client.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt(
        "_dmarc.client.test",
        "v=DMARC1; p=reject; rua=mailto:d@client.test",
    );
    let mut raw = String::from(
        "From: Alice <alice@client.test>\r\nTo: sales@example.test\r\nSubject: bench\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <bench@client.test>\r\n\r\n",
    );
    while raw.len() < 4096 {
        raw.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n",
        );
    }
    let signer = DkimSigner::from_key(key.signing)
        .domain("client.test")
        .selector("s1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"]);
    let sig = signer.sign(raw.as_bytes()).expect("sign");
    format!("{}{raw}", sig.to_header())
}

fn config(dir: &Path, dns: SocketAddr, auth: AuthConfig) -> Config {
    let d = dir.display();
    let toml = format!(
        r#"
[server]
hostname = "mx.example.test"
data_dir = "{d}/data"
[listeners.inbound]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "{d}/mx.crt"
key = "{d}/mx.key"
[smtp]
max_connections_per_ip = 200
[dns]
nameservers = ["{dns}"]
[[domains]]
name = "example.test"
[[aliases]]
address = "sales@example.test"
route = "sink"
[routes.sink]
kind = "discard"
"#
    );
    let mut c = Config::from_toml(&toml, Path::new("bench.toml")).unwrap_or_else(|e| panic!("{e}"));
    c.auth = auth;
    c
}

fn bench_verify(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dns, raw) = rt.block_on(async {
        let dns = dns::DnsServer::start().await;
        let raw = signed_message(&dns, dir.path());
        (dns, raw)
    });
    let cfg = config(dir.path(), dns.addr, AuthConfig::default());
    let resolver = mxgate::dns::Dns::from_config(&cfg.dns).expect("dns");
    let verifier = Verifier::new(&cfg, resolver, Metrics::new());
    let from = ReversePath::Address(Address {
        local: "alice".into(),
        domain: "client.test".into(),
    });
    let ip = IpAddr::from([127, 0, 0, 1]);
    let first = rt.block_on(verifier.verify(ip, "client.test", &from, raw.as_bytes()));
    assert_eq!(
        first.erp_header(false),
        "spf=pass dkim=pass dmarc=pass arc=none iprev=pass",
        "bench setup"
    );
    let before = dns.queries();
    let mut g = c.benchmark_group("auth_verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rsa2048_spf_dmarc", |b| {
        b.iter(|| rt.block_on(verifier.verify(ip, "client.test", &from, black_box(raw.as_bytes()))))
    });
    g.finish();
    println!(
        "auth_verify: DNS queries during the measurement: {}",
        dns.queries() - before
    );
}

/// Reads one (possibly multi-line) reply; its code, 0 when the connection closed.
async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) -> u16 {
    loop {
        line.clear();
        if r.read_line(line).await.unwrap_or(0) == 0 {
            return 0;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
}

/// One SMTP session sending `n` messages; returns how many got 250.
async fn session(addr: SocketAddr, raw: Arc<String>, n: usize) -> usize {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    reply(&mut r, &mut line).await;
    w.write_all(b"EHLO client.test\r\n").await.expect("write");
    reply(&mut r, &mut line).await;
    let mut ok = 0;
    let data = format!("{}.\r\n", raw.as_str());
    for _ in 0..n {
        w.write_all(b"MAIL FROM:<alice@client.test>\r\n")
            .await
            .expect("write");
        reply(&mut r, &mut line).await;
        w.write_all(b"RCPT TO:<sales@example.test>\r\n")
            .await
            .expect("write");
        reply(&mut r, &mut line).await;
        w.write_all(b"DATA\r\n").await.expect("write");
        reply(&mut r, &mut line).await;
        w.write_all(data.as_bytes()).await.expect("write");
        if reply(&mut r, &mut line).await == 250 {
            ok += 1;
        }
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    ok
}

/// CPU seconds this process (server, clients and DNS server alike) has used so far:
/// utime + stime from /proc/self/stat, in clock ticks of 10 ms. Unlike wall time, not
/// inflated by whatever else runs on the machine.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after_comm
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // After "pid (comm)": state is field 3 (not numeric), utime/stime are fields 14/15.
    f.get(10)
        .zip(f.get(11))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// (messages/s of wall time, messages per CPU second) through the whole inbound path of a
/// server with `auth`.
async fn load(raw: &Arc<String>, dns: SocketAddr, auth: AuthConfig) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Server::start(config(dir.path(), dns, auth))
        .await
        .expect("start");
    let addr = running.inbound.expect("inbound");
    // Warm-up: fills the DNS caches and starts RocksDB's group commit.
    assert_eq!(
        session(addr, raw.clone(), 20).await,
        20,
        "warm-up refused mail"
    );
    let start = Instant::now();
    let cpu = cpu_secs();
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|_| tokio::spawn(session(addr, raw.clone(), PER_SESSION)))
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("session");
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    assert_eq!(ok, SESSIONS * PER_SESSION, "some messages refused");
    running.shutdown().await;
    (ok as f64 / secs, ok as f64 / cpu)
}

fn bench_load(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dns, raw) = rt.block_on(async {
        let dns = dns::DnsServer::start().await;
        let raw = Arc::new(signed_message(&dns, dir.path()));
        (dns, raw)
    });
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let rounds: usize = std::env::var("MXGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for _ in 0..rounds {
        on.push(rt.block_on(load(&raw, dns.addr, AuthConfig::default())));
        off.push(rt.block_on(load(&raw, dns.addr, AuthConfig::none())));
    }
    let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(pick).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let wall = |r: &(f64, f64)| r.0;
    let cpu = |r: &(f64, f64)| r.1;
    let (w_on, w_off) = (median(&on, wall), median(&off, wall));
    let (c_on, c_off) = (median(&on, cpu), median(&off, cpu));
    println!(
        "inbound load ({SESSIONS} sessions x {PER_SESSION} msgs, {} bytes, DKIM rsa2048), median of {rounds}:",
        raw.len()
    );
    let runs = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        v.iter()
            .map(|r| format!("{:.0}", pick(r)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  wall msg/s   on {w_on:.0} [{}]  off {w_off:.0} [{}]  ratio {:.2}",
        runs(&on, wall),
        runs(&off, wall),
        w_on / w_off
    );
    println!(
        "  msg/CPU-sec  on {c_on:.0} [{}]  off {c_off:.0} [{}]  ratio {:.2}",
        runs(&on, cpu),
        runs(&off, cpu),
        c_on / c_off
    );
    println!("  (goal: ratio >= 0.7)");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    if std::env::var_os("MXGATE_BENCH_SKIP_VERIFY").is_none() {
        bench_verify(&mut c, &rt);
        c.final_summary();
    }
    if std::env::var_os("MXGATE_BENCH_SKIP_LOAD").is_none() {
        bench_load(&rt);
    }
}
