//! An in-process authoritative DNS server for tests: UDP and TCP on one ephemeral loopback
//! port, answering from records the test declares (TXT, MX, A, AAAA, PTR). Names that have
//! no record at all get NXDOMAIN; names with other types get an empty NOERROR.
//!
//! ```ignore
//! let dns = DnsServer::start().await;
//! dns.txt("client.test", "v=spf1 ip4:127.0.0.1 -all");
//! let toml = dns.config_toml();   // [dns] nameservers = ["127.0.0.1:PORT"] ...
//! ```
//! [`DnsServer::blackhole`] is a server that never answers (DNS "down": timeouts).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

type Zone = HashMap<String, Vec<RData>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<RwLock<Zone>>,
    queries: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DnsServer {
    /// A server answering from an (initially empty) zone.
    pub async fn start() -> DnsServer {
        Self::spawn(true).await
    }

    /// A server that reads queries and never answers: every lookup times out.
    pub async fn blackhole() -> DnsServer {
        Self::spawn(false).await
    }

    async fn spawn(answer: bool) -> DnsServer {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("udp addr");
        let s = DnsServer {
            addr,
            zone: Arc::default(),
            queries: Arc::default(),
            stop: CancellationToken::new(),
        };
        let ctx = Ctx {
            zone: s.zone.clone(),
            queries: s.queries.clone(),
            answer,
        };
        tokio::spawn(serve_udp(udp, ctx.clone(), s.stop.clone()));
        tokio::spawn(serve_tcp(tcp, ctx, s.stop.clone()));
        s
    }

    /// `[dns]` TOML pointing the server's resolver here.
    pub fn config_toml(&self) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\ncache_size = 512\n",
            self.addr
        )
    }

    /// Queries received so far (UDP and TCP).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn add(&self, name: &str, rdata: RData) {
        let key = key(name);
        self.zone
            .write()
            .expect("zone lock")
            .entry(key)
            .or_default()
            .push(rdata);
    }

    /// A TXT record; long text is split into 255-octet character-strings (RFC 7208 §3.3).
    pub fn txt(&self, name: &str, text: &str) {
        let chunks: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.add(name, RData::TXT(TXT::new(chunks)));
    }

    pub fn mx(&self, name: &str, preference: u16, host: &str) {
        self.add(name, RData::MX(MX::new(preference, name_of(host))));
    }

    pub fn a(&self, name: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(name, RData::AAAA(AAAA(v6))),
        }
    }

    /// PTR for `ip` (the in-addr.arpa / ip6.arpa name is derived).
    pub fn ptr(&self, ip: IpAddr, host: &str) {
        let rev = Name::from(ip).to_ascii();
        self.add(&rev, RData::PTR(PTR(name_of(host))));
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) {
        self.zone.write().expect("zone lock").remove(&key(name));
    }
}

fn key(name: &str) -> String {
    let mut k = name.trim().to_ascii_lowercase();
    if !k.ends_with('.') {
        k.push('.');
    }
    k
}

fn name_of(host: &str) -> Name {
    Name::from_ascii(key(host)).expect("valid test host name")
}

/// UDP and TCP on the same ephemeral port (the resolver uses one address for both).
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("udp addr");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

#[derive(Clone)]
struct Ctx {
    zone: Arc<RwLock<Zone>>,
    queries: Arc<AtomicUsize>,
    answer: bool,
}

impl Ctx {
    /// The wire response to `query`, or None to stay silent.
    fn respond(&self, query: &[u8], max_len: Option<usize>) -> Option<Vec<u8>> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if !self.answer {
            return None;
        }
        let req = Message::from_vec(query).ok()?;
        let mut resp = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        resp.metadata = Metadata::response_from_request(&req.metadata);
        resp.metadata.authoritative = true;
        if req.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(4096);
            resp.edns = Some(edns);
        }
        let zone = self.zone.read().expect("zone lock");
        for q in &req.queries {
            resp.add_query(q.clone());
            let k = key(&q.name.to_ascii());
            match zone.get(&k) {
                None => resp.metadata.response_code = ResponseCode::NXDomain,
                Some(rdatas) => {
                    for r in rdatas.iter().filter(|r| r.record_type() == q.query_type) {
                        resp.add_answer(Record::from_rdata(q.name.clone(), 300, r.clone()));
                    }
                }
            }
        }
        drop(zone);
        // RFC 2308: a negative answer carries the zone's SOA, whose minimum is how long
        // resolvers may cache it (as real authoritative servers do).
        if resp.answers.is_empty()
            && let Some(q) = req.queries.first()
        {
            let apex = q.name.trim_to(1); // the TLD: an ancestor of every name asked
            let soa = SOA::new(
                name_of("ns.test"),
                name_of("hostmaster.test"),
                1,
                3600,
                600,
                86400,
                300,
            );
            resp.add_authority(Record::from_rdata(apex, 300, RData::SOA(soa)));
        }
        let bytes = resp.to_vec().ok()?;
        let limit = max_len.unwrap_or(usize::MAX).min(
            req.edns
                .as_ref()
                .map_or(512, |e| usize::from(e.max_payload().max(512))),
        );
        if max_len.is_some() && bytes.len() > limit {
            return resp.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}

async fn serve_udp(sock: UdpSocket, ctx: Ctx, stop: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r { Ok(v) => v, Err(_) => continue },
        };
        if let Some(resp) = ctx.respond(&buf[..n], Some(4096)) {
            let _ = sock.send_to(&resp, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Ctx, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
        };
        tokio::spawn(serve_tcp_conn(stream, ctx.clone(), stop.clone()));
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, ctx: Ctx, stop: CancellationToken) {
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            r = stream.read_exact(&mut len) => r,
        };
        if read.is_err() {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut q).await.is_err() {
            return;
        }
        let Some(resp) = ctx.respond(&q, None) else {
            continue;
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            return;
        };
        if stream.write_all(&n.to_be_bytes()).await.is_err()
            || stream.write_all(&resp).await.is_err()
        {
            return;
        }
    }
}
