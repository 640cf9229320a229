//! A small in-process SMTP server standing in for smart hosts and MX hosts: EHLO with
//! PIPELINING, STARTTLS (self-signed certificate) or implicit TLS, AUTH PLAIN/LOGIN,
//! scripted RCPT/DATA replies, and a record of every accepted message.
//!
//! ```ignore
//! let sink = Sink::start(SinkOptions::default()).await;
//! sink.script_rcpt(&["451 4.3.0 busy", "451 4.3.0 busy"]); // then 250
//! let port = sink.addr.port();
//! ```
//! [`refused_port`] is a loopback port nobody listens on (connection refused).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SinkTls {
    /// STARTTLS offered.
    #[default]
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// Plaintext only, STARTTLS not offered.
    None,
}

#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    pub tls: SinkTls,
    /// (user, password) the sink accepts; `None` = AUTH not offered.
    pub auth: Option<(String, String)>,
}

/// One message the sink accepted.
#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    /// The MAIL command line as the client sent it (with its ESMTP parameters).
    pub mail_line: String,
    pub rcpts: Vec<String>,
    pub data: String,
    pub tls: bool,
    pub auth_user: Option<String>,
    /// Address the client connected from (the relay's source IP).
    pub peer: IpAddr,
}

#[derive(Default)]
struct State {
    rcpt_script: VecDeque<String>,
    data_script: VecDeque<String>,
    received: Vec<Received>,
    connections: usize,
    transactions: usize,
    /// Drop the connection (without a word) after each accepted message.
    hang_up_after_message: bool,
    /// EHLO keywords offered besides the standard ones ([`Sink::offer`]).
    keywords: Vec<String>,
}

pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A loopback port with nothing listening: connecting is refused.
pub async fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

impl Sink {
    pub async fn start(opts: SinkOptions) -> Sink {
        Sink::start_with_certificate(opts, acceptor()).await
    }

    /// As [`Sink::start`], with `acceptor`'s certificate for TLS (e.g. one a
    /// [`TestCa`](super::test_ca::TestCa) signed for an MX host name) instead of a
    /// self-signed one.
    pub async fn start_with_certificate(opts: SinkOptions, acceptor: TlsAcceptor) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (st, stp) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stp.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((tcp, peer)) = accepted else { continue };
                        st.lock().expect("sink state").connections += 1;
                        let (st, opts, acc, stp) = (st.clone(), opts.clone(), acceptor.clone(), stp.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stp.cancelled() => {}
                                _ = serve(tcp, peer.ip(), opts, acc, st) => {}
                            }
                        });
                    }
                }
            }
        });
        Sink { addr, state, stop }
    }

    /// Replies to the next RCPTs (one entry each); afterwards `250 2.1.5 OK`.
    pub fn script_rcpt(&self, replies: &[&str]) {
        let mut s = self.state.lock().expect("sink state");
        s.rcpt_script.extend(replies.iter().map(|r| r.to_string()));
    }

    /// Replies to the next message ends (after DATA's dot); afterwards `250 2.0.0 Ok: queued`.
    pub fn script_data(&self, replies: &[&str]) {
        let mut s = self.state.lock().expect("sink state");
        s.data_script.extend(replies.iter().map(|r| r.to_string()));
    }

    /// From now on, EHLO also offers `keyword` (e.g. `REQUIRETLS`).
    pub fn offer(&self, keyword: &str) {
        let mut s = self.state.lock().expect("sink state");
        s.keywords.push(keyword.to_string());
    }

    /// From now on, close each connection right after the message's 250 (a server that
    /// times idle clients out quickly): pooled sessions to it go stale.
    pub fn hang_up_after_each_message(&self) {
        self.state.lock().expect("sink state").hang_up_after_message = true;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("sink state").received.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().expect("sink state").connections
    }

    /// MAIL commands seen (accepted or not).
    pub fn transactions(&self) -> usize {
        self.state.lock().expect("sink state").transactions
    }
}

fn acceptor() -> TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed cert");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .expect("key der");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(cfg))
}

async fn serve(
    tcp: TcpStream,
    peer: IpAddr,
    opts: SinkOptions,
    acc: TlsAcceptor,
    st: Arc<Mutex<State>>,
) {
    if opts.tls == SinkTls::Implicit {
        let Ok(tls) = acc.accept(tcp).await else {
            return;
        };
        let _ = session(tls, peer, &opts, &st, true).await;
        return;
    }
    let mut tcp = tcp;
    if let Ok(true) = session(&mut tcp, peer, &opts, &st, false).await {
        let Ok(tls) = acc.accept(tcp).await else {
            return;
        };
        let _ = session(tls, peer, &opts, &st, true).await;
    }
}

/// Runs the dialogue; `Ok(true)` when STARTTLS was accepted (the caller then upgrades).
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    peer: IpAddr,
    opts: &SinkOptions,
    st: &Arc<Mutex<State>>,
    tls: bool,
) -> std::io::Result<bool> {
    let mut io = BufReader::new(io);
    if !(tls && opts.tls == SinkTls::StartTls) {
        io.write_all(b"220 sink.test ESMTP test sink\r\n").await?;
    }
    let mut auth_user: Option<String> = None;
    let mut mail_from: Option<String> = None;
    let mut mail_line = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
            if opts.tls == SinkTls::StartTls && !tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if opts.auth.is_some() {
                r.push_str("250-AUTH PLAIN LOGIN\r\n");
            }
            for k in &st.lock().expect("sink state").keywords {
                r.push_str(&format!("250-{k}\r\n"));
            }
            r.push_str("250 SIZE 10000000");
            r
        } else if upper == "STARTTLS" && opts.tls == SinkTls::StartTls && !tls {
            io.write_all(b"220 2.0.0 go ahead\r\n").await?;
            io.flush().await?;
            return Ok(true);
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd.get(11..).unwrap_or("").trim().to_string();
            let arg = if arg.is_empty() {
                io.write_all(b"334 \r\n").await?;
                io.flush().await?;
                let mut l = String::new();
                io.read_line(&mut l).await?;
                l.trim().to_string()
            } else {
                arg
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(arg)
                .unwrap_or_default();
            let parts: Vec<String> = decoded
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            check_auth(opts, parts.get(1), parts.get(2), &mut auth_user)
        } else if upper == "AUTH LOGIN" {
            io.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            io.flush().await?;
            let mut u = String::new();
            io.read_line(&mut u).await?;
            io.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            io.flush().await?;
            let mut p = String::new();
            io.read_line(&mut p).await?;
            let dec = |s: &str| {
                String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .unwrap_or_default(),
                )
                .into_owned()
            };
            check_auth(opts, Some(&dec(&u)), Some(&dec(&p)), &mut auth_user)
        } else if upper.starts_with("MAIL FROM:") {
            st.lock().expect("sink state").transactions += 1;
            if opts.auth.is_some() && auth_user.is_none() {
                "530 5.7.0 Authentication required".into()
            } else {
                mail_from = Some(angle(&cmd[10..]));
                mail_line = cmd.clone();
                rcpts.clear();
                "250 2.1.0 OK".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let scripted = st.lock().expect("sink state").rcpt_script.pop_front();
            let r = scripted.unwrap_or_else(|| "250 2.1.5 OK".into());
            if r.starts_with('2') {
                rcpts.push(angle(&cmd[8..]));
            }
            r
        } else if upper == "DATA" {
            if mail_from.is_none() || rcpts.is_empty() {
                "554 5.5.1 No valid recipients".into()
            } else {
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
                    let l = l.strip_prefix('.').map(str::to_string).unwrap_or(l);
                    data.push_str(&l);
                }
                let (r, hang_up) = {
                    let mut s = st.lock().expect("sink state");
                    let r = s
                        .data_script
                        .pop_front()
                        .unwrap_or_else(|| "250 2.0.0 Ok: queued as SINK1".into());
                    if r.starts_with('2') {
                        s.received.push(Received {
                            mail_from: mail_from.take().unwrap_or_default(),
                            mail_line: std::mem::take(&mut mail_line),
                            rcpts: std::mem::take(&mut rcpts),
                            data,
                            tls,
                            auth_user: auth_user.clone(),
                            peer,
                        });
                    }
                    (r, s.hang_up_after_message)
                };
                mail_from = None;
                rcpts.clear();
                if hang_up {
                    io.write_all(format!("{r}\r\n").as_bytes()).await?;
                    io.flush().await?;
                    return Ok(false);
                }
                r
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpts.clear();
            "250 2.0.0 OK".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK".into()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 bye\r\n").await?;
            io.flush().await?;
            return Ok(false);
        } else {
            "502 5.5.1 unrecognized".into()
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
        io.flush().await?;
    }
}

fn check_auth(
    opts: &SinkOptions,
    user: Option<&String>,
    pass: Option<&String>,
    auth_user: &mut Option<String>,
) -> String {
    match (&opts.auth, user, pass) {
        (Some((u, p)), Some(gu), Some(gp)) if u == gu && p == gp => {
            *auth_user = Some(u.clone());
            "235 2.7.0 Authentication successful".into()
        }
        _ => "535 5.7.8 Authentication credentials invalid".into(),
    }
}

fn angle(s: &str) -> String {
    s.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}
