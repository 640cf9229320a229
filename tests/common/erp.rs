//! A real HTTP server standing in for the ERP: records every POST (headers and body) and
//! answers with a status the test controls. It can be created before it listens, so a
//! test can start mxgate while the ERP is "down" and bring it up later on the same port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// One request the ERP received.
#[derive(Clone, Debug)]
pub struct Push {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Push {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Shared {
    pushes: Arc<Mutex<Vec<Push>>>,
    status: Arc<AtomicU16>,
    handshake_failures: Arc<AtomicU64>,
    /// Set: requests must carry a valid `X-Mxgate-Signature`, else 401 (not recorded).
    secret: Arc<Mutex<Option<String>>>,
    bad_signatures: Arc<AtomicU64>,
}

/// Accepts TCP, then the TLS handshake; a failed handshake is counted and skipped.
struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
    failures: Arc<AtomicU64>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.tls.accept(tcp).await {
                Ok(s) => return (s, addr),
                Err(_) => {
                    self.failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

pub struct Erp {
    pub addr: SocketAddr,
    shared: Shared,
    stop: Option<CancellationToken>,
    /// Set: the ERP speaks HTTPS with this certificate.
    tls: Option<TlsAcceptor>,
}

impl Erp {
    /// Listening now, answering 200.
    pub async fn start() -> Erp {
        // Bound at once on an ephemeral port: reserving one and binding it again later
        // races with every other socket the parallel tests open.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut erp = Erp::reserve_at(l.local_addr().expect("addr"));
        l.set_nonblocking(true).expect("nonblocking");
        erp.serve(TcpListener::from_std(l).expect("listener"));
        erp
    }

    /// Listening now over HTTPS with `tls`'s certificate, answering 200.
    pub async fn start_tls(tls: TlsAcceptor) -> Erp {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut erp = Erp::reserve_at(l.local_addr().expect("addr"));
        erp.tls = Some(tls);
        l.set_nonblocking(true).expect("nonblocking");
        erp.serve(TcpListener::from_std(l).expect("listener"));
        erp
    }

    /// Picks a free port but does not listen yet: connections are refused ("ERP down").
    pub fn reserve() -> Erp {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        Erp::reserve_at(addr)
    }

    fn reserve_at(addr: SocketAddr) -> Erp {
        let shared = Shared::default();
        shared.status.store(200, Ordering::SeqCst);
        Erp {
            addr,
            shared,
            stop: None,
            tls: None,
        }
    }

    /// Starts listening on the reserved port.
    pub async fn up(&mut self) {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(self.addr).expect("rebind the reserved ERP port");
        let listener: TcpListener = sock.listen(128).expect("listen");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let app = Router::new()
            .fallback(record)
            .with_state(self.shared.clone());
        let s = stop.clone();
        match self.tls.clone() {
            None => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(s.cancelled_owned())
                        .await;
                });
            }
            Some(tls) => {
                let listener = TlsListener {
                    tcp: listener,
                    tls,
                    failures: self.shared.handshake_failures.clone(),
                };
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(s.cancelled_owned())
                        .await;
                });
            }
        }
        self.stop = Some(stop);
    }

    /// The status every request gets from now on (e.g. 503 = ERP failing).
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// From now on, checks `X-Mxgate-Signature` against `secret` as an ERP would:
    /// HMAC-SHA256 of `"<t>." + body`, `t` at most 5 minutes old; a bad one gets 401.
    pub fn verify_signatures(&self, secret: &str) {
        *self.shared.secret.lock().expect("lock") = Some(secret.to_string());
    }

    /// Requests refused for a missing or wrong signature.
    pub fn bad_signatures(&self) -> u64 {
        self.shared.bad_signatures.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (the client refused the certificate, ...).
    pub fn handshake_failures(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    pub fn pushes(&self) -> Vec<Push> {
        self.shared.pushes.lock().expect("lock").clone()
    }
}

impl Drop for Erp {
    fn drop(&mut self) {
        if let Some(s) = &self.stop {
            s.cancel();
        }
    }
}

async fn record(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let secret = shared.secret.lock().expect("lock").clone();
    if let Some(secret) = secret {
        let header = headers
            .get("x-mxgate-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !signature_valid(&secret, header, &body) {
            shared.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
    }
    let status =
        StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if status.is_success() {
        shared.pushes.lock().expect("lock").push(Push {
            path: uri.path().to_string(),
            headers,
            body: body.to_vec(),
        });
    }
    status
}

/// The receiver's check of `X-Mxgate-Signature: t=..,v1=..` (README's recipe, in Rust).
pub fn signature_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let field = |k: &str| {
        header
            .split(',')
            .find_map(|p| p.trim().strip_prefix(k)?.strip_prefix('='))
    };
    let (Some(t), Some(v1)) = (field("t"), field("v1")) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    match t.parse::<u64>() {
        Ok(t) if now.abs_diff(t) <= 300 => {}
        _ => return false,
    }
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex == v1
}

/// Minimal HTTP/1.1 GET over a raw socket (admin endpoints); returns (status, body).
pub async fn http_get(url: &str) -> (u16, String) {
    http_request("GET", url, "").await
}

pub async fn http_request(method: &str, url: &str, body: &str) -> (u16, String) {
    http_request_with(method, url, body, &[]).await
}

pub async fn http_request_with(
    method: &str,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect admin");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
