//! The two stand-ins of the XOAUTH2 tests, sharing one [`Issuer`]: an OAuth2 token
//! endpoint over HTTPS (certificate from a test CA) that records every request's form, and
//! an SMTP smart host that offers AUTH XOAUTH2 only after STARTTLS and accepts exactly the
//! tokens the endpoint issued and the test did not revoke.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What the endpoint has issued and the sink has seen.
#[derive(Default)]
struct Ledger {
    /// Every token request's form fields, in order.
    requests: Vec<HashMap<String, String>>,
    /// Tokens the sink accepts.
    valid: HashSet<String>,
    /// The sink refuses every token, even one just issued.
    refuse_tokens: bool,
    /// `expires_in` of the next answers.
    expires_in: u64,
    /// Answer each request with a new refresh token (`r-<n>`).
    rotate: bool,
    /// Every XOAUTH2 initial response the sink got, decoded.
    auth_strings: Vec<String>,
    /// Messages the sink accepted: (token the session logged in with, data).
    received: Vec<(String, String)>,
    /// SMTP connections accepted.
    connections: usize,
}

#[derive(Clone)]
pub struct Issuer {
    ledger: Arc<Mutex<Ledger>>,
    /// Non-200: the endpoint refuses every request with this status and an OAuth2 error.
    status: Arc<AtomicU16>,
    stop: CancellationToken,
}

/// The test's handle: dropping it stops both servers.
pub struct Rig(pub Issuer);

impl Drop for Rig {
    fn drop(&mut self) {
        self.0.stop.cancel();
    }
}

impl std::ops::Deref for Rig {
    type Target = Issuer;
    fn deref(&self) -> &Issuer {
        &self.0
    }
}

impl Rig {
    /// Tokens issued with `expires_in` seconds; no server runs yet.
    pub fn new(expires_in: u64) -> Rig {
        let ledger = Ledger {
            expires_in,
            ..Ledger::default()
        };
        Rig(Issuer {
            ledger: Arc::new(Mutex::new(ledger)),
            status: Arc::new(AtomicU16::new(200)),
            stop: CancellationToken::new(),
        })
    }
}

impl Issuer {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("ledger")
    }

    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.ledger().requests.clone()
    }

    pub fn auth_strings(&self) -> Vec<String> {
        self.ledger().auth_strings.clone()
    }

    pub fn received(&self) -> Vec<(String, String)> {
        self.ledger().received.clone()
    }

    pub fn connections(&self) -> usize {
        self.ledger().connections
    }

    /// The sink stops accepting every token issued so far (as if revoked or expired early).
    pub fn revoke_all(&self) {
        self.ledger().valid.clear();
    }

    /// From now on the sink refuses every token (a mailbox whose consent was withdrawn).
    pub fn refuse_all_tokens(&self) {
        self.ledger().refuse_tokens = true;
    }

    pub fn rotate_refresh_tokens(&self) {
        self.ledger().rotate = true;
    }

    /// The endpoint answers `status` with `{"error":"invalid_client",...}` from now on.
    pub fn refuse(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Serves the token endpoint over HTTPS on `127.0.0.1:0`; returns its `/token` URL.
    pub async fn serve_endpoint(&self, tls: TlsAcceptor) -> String {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let app = Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(self.clone());
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(TlsListener { tcp, tls }, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        format!("https://{addr}/token")
    }

    /// Serves the smart host (STARTTLS with `tls`'s certificate); returns its address.
    pub async fn serve_smtp(&self, tls: TlsAcceptor, user: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let (me, user, stop) = (self.clone(), user.to_string(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                me.ledger().connections += 1;
                let (me, user, tls, stop) = (me.clone(), user.clone(), tls.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = smtp_session(tcp, tls, &me, &user) => {}
                    }
                });
            }
        });
        addr
    }
}

/// The token endpoint: records the form; answers a new bearer token `tok-<n>`.
async fn token(State(issuer): State<Issuer>, body: Bytes) -> (StatusCode, String) {
    // Long enough for concurrent deliveries to pile up behind the first request.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let form = parse_form(&String::from_utf8_lossy(&body));
    let status = issuer.status.load(Ordering::SeqCst);
    let mut l = issuer.ledger();
    l.requests.push(form);
    if status != 200 {
        let code = StatusCode::from_u16(status).expect("status");
        return (
            code,
            r#"{"error":"invalid_client","error_description":"client secret expired"}"#.into(),
        );
    }
    let n = l.requests.len();
    let access = format!("tok-{n}");
    l.valid.insert(access.clone());
    let refresh = if l.rotate {
        format!(r#","refresh_token":"r-{n}""#)
    } else {
        String::new()
    };
    let body = format!(
        r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":{}{refresh}}}"#,
        l.expires_in
    );
    (StatusCode::OK, body)
}

/// `a=b+c&d=%2F` → {a: "b c", d: "/"}.
pub fn parse_form(s: &str) -> HashMap<String, String> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let bytes = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

struct TlsListener {
    tcp: TcpListener,
    tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(s) = self.tls.accept(tcp).await {
                return (s, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

async fn smtp_session(tcp: TcpStream, tls: TlsAcceptor, issuer: &Issuer, user: &str) {
    let mut tcp = BufReader::new(tcp);
    if tcp.write_all(b"220 oauth.sink ESMTP\r\n").await.is_err() {
        return;
    }
    if let Ok(true) = dialogue(&mut tcp, false, issuer, user).await {
        let Ok(stream) = tls.accept(tcp.into_inner()).await else {
            return;
        };
        let _ = dialogue(&mut BufReader::new(stream), true, issuer, user).await;
    }
}

/// `Ok(true)`: STARTTLS accepted, the caller upgrades.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    tls: bool,
    issuer: &Issuer,
    user: &str,
) -> std::io::Result<bool> {
    let mut logged_in: Option<String> = None;
    let mut in_mail = false;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            if tls {
                "250-oauth.sink\r\n250-PIPELINING\r\n250 AUTH LOGIN XOAUTH2".to_string()
            } else {
                "250-oauth.sink\r\n250-PIPELINING\r\n250 STARTTLS".to_string()
            }
        } else if upper == "STARTTLS" && !tls {
            io.write_all(b"220 2.0.0 go ahead\r\n").await?;
            io.flush().await?;
            return Ok(true);
        } else if let Some(arg) = cmd.strip_prefix("AUTH XOAUTH2 ").filter(|_| tls) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(arg.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let token = decoded
                .strip_prefix(&format!("user={user}\x01auth=Bearer "))
                .and_then(|t| t.strip_suffix("\x01\x01"))
                .map(str::to_string);
            let ok = {
                let mut l = issuer.ledger();
                l.auth_strings.push(decoded.clone());
                !l.refuse_tokens && token.as_ref().is_some_and(|t| l.valid.contains(t))
            };
            if ok {
                logged_in = token;
                "235 2.7.0 Accepted".to_string()
            } else {
                // Google's answer to a bad token: a base64 JSON challenge, an empty line
                // from the client, then 535.
                let json = base64::engine::general_purpose::STANDARD.encode(
                    r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#,
                );
                io.write_all(format!("334 {json}\r\n").as_bytes()).await?;
                io.flush().await?;
                let mut empty = String::new();
                io.read_line(&mut empty).await?;
                if empty.trim().is_empty() {
                    "535 5.7.8 Username and Password not accepted".to_string()
                } else {
                    "501 5.5.2 expected an empty line after the error challenge".to_string()
                }
            }
        } else if upper.starts_with("MAIL FROM:") {
            if logged_in.is_some() {
                in_mail = true;
                "250 2.1.0 OK".to_string()
            } else {
                "530 5.7.0 Authentication required".to_string()
            }
        } else if upper.starts_with("RCPT TO:") && in_mail {
            "250 2.1.5 OK".to_string()
        } else if upper == "DATA" && in_mail {
            io.write_all(b"354 go ahead\r\n").await?;
            io.flush().await?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if io.read_line(&mut l).await? == 0 {
                    return Ok(false);
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            let token = logged_in.clone().unwrap_or_default();
            issuer.ledger().received.push((token, data));
            in_mail = false;
            "250 2.0.0 Ok: queued".to_string()
        } else if upper == "RSET" || upper == "NOOP" {
            in_mail = false;
            "250 2.0.0 OK".to_string()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 bye\r\n").await?;
            io.flush().await?;
            return Ok(false);
        } else {
            "503 5.5.1 bad sequence".to_string()
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
        io.flush().await?;
    }
}
