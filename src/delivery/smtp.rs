//! Outbound SMTP for the relay: one transaction (MAIL, RCPT, DATA) to one [`Hop`] with
//! mail-send's client, over a pooled connection when one to the same host is idle.
//!
//! Input: a [`Hop`] (smart host or MX host, from [`plan`](super::plan)) and an [`Envelope`].
//! Output: the remote's final reply, or an [`SmtpError`] saying at which stage it failed —
//! [`relay`](super::relay) decides from that whether the next host is tried (connection,
//! TLS, AUTH, 4xx) or the recipient bounces (5xx in the transaction).
//!
//! - TLS: `tls` (implicit), `starttls` (required), `none`, and `opportunistic` for MX hosts
//!   (STARTTLS when offered, certificate not verified — Postfix `smtp_tls_security_level =
//!   may`). Smart hosts verify certificates against the webpki roots unless `tls_verify =
//!   false`.
//! - Pipelining (RFC 2920): MAIL and RCPT go in one write when the host offers it.
//! - Reuse: after a transaction the connection is kept idle for `relay.connection_idle`;
//!   the next message to the same host sends its MAIL on it (RSET first only after a
//!   refused transaction); a session the server closed meanwhile is replaced by a fresh
//!   connection. Per-destination concurrency is bounded by a semaphore per [`Hop::dest`].
//! - Source IP: a hop with [`Hop::source`] binds its socket to that address before connecting
//!   and only tries the host's addresses of the same family (an IPv4 source cannot reach an
//!   IPv6 address). Pooled connections and concurrency limits are kept per source, so a
//!   mass-mail connection never carries transactional mail and the other way round. An
//!   address this host does not have fails the hop ([`SmtpError::Bind`], deferred).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mail_send::{Credentials, SmtpClient};
use rustls::pki_types::ServerName;
use smtp_proto::{EXT_PIPELINING, EXT_START_TLS, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::tls_client::connector;
use crate::config::RelayConfig;

/// How a connection to a hop is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS must be offered and succeed.
    StartTls,
    /// STARTTLS when offered (MX delivery); plaintext otherwise.
    Opportunistic,
    /// Plaintext.
    None,
}

/// One host to try.
#[derive(Clone, Debug)]
pub struct Hop {
    /// For logs and `last_reply`: `smarthost primary` or `mx mx1.example.net`.
    pub label: String,
    /// Host name for TLS (SNI and certificate check).
    pub host: String,
    /// Addresses in the order they are tried.
    pub addrs: Vec<SocketAddr>,
    pub tls: TlsMode,
    pub tls_verify: bool,
    /// (username, password) for AUTH; `None` = no AUTH.
    pub credentials: Option<(String, String)>,
    /// Concurrency key: the smart host name, or the recipient domain for MX delivery.
    pub dest: String,
    /// Local address to connect from (the stream's source IP); `None` = the OS picks.
    pub source: Option<IpAddr>,
}

impl Hop {
    fn pool_key(&self) -> String {
        let user = self.credentials.as_ref().map_or("", |(u, _)| u.as_str());
        format!(
            "{}|{}|{:?}|{user}|{}",
            self.label,
            self.host,
            self.tls,
            source_label(self.source)
        )
    }

    /// Concurrency key: the destination, per source IP.
    fn limit_key(&self) -> String {
        format!("{}|{}", self.dest, source_label(self.source))
    }
}

fn source_label(source: Option<IpAddr>) -> String {
    source.map_or_else(|| "default".to_string(), |ip| ip.to_string())
}

/// One transaction's envelope and content.
pub struct Envelope<'a> {
    /// Reverse path; empty for the null sender.
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a [u8],
}

/// Where a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// TCP connect, DNS of a smart host name, timeouts, a dropped connection.
    #[error("{host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("{host}: TLS failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: authentication failed: {reason}")]
    Auth { host: String, reason: String },
    /// The source IP could not be bound (not an address of this host) or the host has no
    /// address of its family.
    #[error("{host}: cannot connect from source IP {ip}: {reason}")]
    Bind {
        host: String,
        ip: IpAddr,
        reason: String,
    },
    /// A negative reply; `in_transaction` = to MAIL, RCPT or DATA (else greeting/EHLO).
    #[error("{reply}")]
    Reply {
        host: String,
        code: u16,
        reply: String,
        in_transaction: bool,
    },
}

impl SmtpError {
    /// A 5xx to MAIL, RCPT or DATA: this recipient is refused, trying elsewhere won't help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SmtpError::Reply {
                code: 500..=599,
                in_transaction: true,
                ..
            }
        )
    }
}

type Io = Box<dyn IoStream>;
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

struct Conn {
    client: SmtpClient<Io>,
    pipelining: bool,
    /// The last transaction failed midway: RSET before the next MAIL (after a completed
    /// one, RFC 5321 §4.1.4 lets the next MAIL follow directly — one round trip saved).
    needs_rset: bool,
    /// Our end of the connection: the `sending_ip` of what it carries.
    local_ip: Option<IpAddr>,
}

/// Connections and per-destination limits shared by all relay attempts.
pub struct Pool {
    helo: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle: Duration,
    per_dest: usize,
    verified: TlsConnector,
    unverified: TlsConnector,
    conns: Mutex<HashMap<String, Vec<(Conn, Instant)>>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Pool {
    pub fn new(cfg: &RelayConfig, helo: &str) -> Pool {
        Pool {
            helo: helo.to_string(),
            connect_timeout: cfg.connect_timeout.get(),
            command_timeout: cfg.command_timeout.get(),
            idle: cfg.connection_idle.get(),
            per_dest: cfg.destination_concurrency.max(1),
            verified: connector(true),
            unverified: connector(false),
            conns: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
        }
    }

    async fn permit(&self, dest: &str) -> OwnedSemaphorePermit {
        let sem = self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(dest.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_dest)))
            .clone();
        sem.acquire_owned()
            .await
            .expect("relay semaphores are never closed")
    }

    fn take_idle(&self, key: &str) -> Option<Conn> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let list = conns.get_mut(key)?;
        while let Some((c, since)) = list.pop() {
            if since.elapsed() < self.idle {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, key: String, conn: Conn) {
        if self.idle.is_zero() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let list = conns.entry(key).or_default();
        list.retain(|(_, since)| since.elapsed() < self.idle);
        list.push((conn, Instant::now()));
    }

    /// One transaction to `hop`. Returns the final reply (`250 2.0.0 Ok: queued as X`).
    pub async fn send(&self, hop: &Hop, env: &Envelope<'_>) -> Result<String, SmtpError> {
        self.send_from(hop, env).await.0
    }

    /// As [`Pool::send`], with the local (sending) IP address of the connection used, also
    /// when the transaction failed after connecting (a 5xx is counted per sending IP too).
    pub async fn send_from(
        &self,
        hop: &Hop,
        env: &Envelope<'_>,
    ) -> (Result<String, SmtpError>, Option<IpAddr>) {
        let _permit = self.permit(&hop.limit_key()).await;
        let key = hop.pool_key();
        // An idle session the server may have closed meanwhile: if it fails before any
        // reply, the transaction is repeated once on a fresh connection.
        while let Some(mut c) = self.take_idle(&key) {
            if c.needs_rset && c.client.rset().await.is_err() {
                continue;
            }
            match self.run(key.clone(), c, hop, env).await {
                (Err(SmtpError::Connect { .. }), _) => continue,
                done => return done,
            }
        }
        match self.open(hop).await {
            Ok(conn) => self.run(key, conn, hop, env).await,
            Err(e) => (Err(e), None),
        }
    }

    /// One transaction on `conn`; the connection goes back to the pool when still in sync.
    async fn run(
        &self,
        key: String,
        mut conn: Conn,
        hop: &Hop,
        env: &Envelope<'_>,
    ) -> (Result<String, SmtpError>, Option<IpAddr>) {
        let local_ip = conn.local_ip;
        let result = transaction(&mut conn, hop, env).await;
        match &result {
            Ok(_) => {
                conn.needs_rset = false;
                self.put_idle(key, conn);
            }
            Err(SmtpError::Reply {
                in_transaction: true,
                ..
            }) => {
                conn.needs_rset = true;
                self.put_idle(key, conn);
            }
            Err(_) => {}
        }
        (result, local_ip)
    }

    /// Connect, greeting, EHLO, TLS, AUTH, then QUIT: the "Test Connection" button.
    pub async fn probe(&self, hop: &Hop) -> Result<String, SmtpError> {
        let conn = self.open(hop).await?;
        let secured = hop.tls != TlsMode::None;
        let _ = conn.client.quit().await;
        Ok(format!(
            "{}: connected{}{}",
            hop.label,
            if secured { ", TLS ok" } else { "" },
            if hop.credentials.is_some() {
                ", AUTH ok"
            } else {
                ""
            }
        ))
    }

    /// A ready session (greeted, EHLO'd, TLS and AUTH done) to the first address that works
    /// (of the source IP's family, when the hop has one).
    async fn open(&self, hop: &Hop) -> Result<Conn, SmtpError> {
        let mut last = None;
        let addrs: Vec<SocketAddr> = hop
            .addrs
            .iter()
            .copied()
            .filter(|a| hop.source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
            .collect();
        if let (Some(ip), true, false) = (hop.source, addrs.is_empty(), hop.addrs.is_empty()) {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(SmtpError::Bind {
                host: hop.host.clone(),
                ip,
                reason: format!("the host has no {family} address"),
            });
        }
        for addr in &addrs {
            match self.open_addr(hop, *addr).await {
                Ok(c) => return Ok(c),
                // Only connection-level trouble tries the host's next address.
                Err(e @ SmtpError::Connect { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| SmtpError::Connect {
            host: hop.host.clone(),
            reason: "no address to connect to".into(),
        }))
    }

    async fn open_addr(&self, hop: &Hop, addr: SocketAddr) -> Result<Conn, SmtpError> {
        let host = format!("{} [{addr}]", hop.host);
        let conn_err = |reason: String| SmtpError::Connect {
            host: host.clone(),
            reason,
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, connect(addr, hop.source, &host))
            .await
        {
            Ok(Err(ConnectError::Bind(e))) => return Err(e),
            Ok(Ok(tcp)) => tcp,
            Ok(Err(ConnectError::Io(e))) => return Err(conn_err(e.to_string())),
            Err(_) => {
                return Err(conn_err(format!(
                    "connect timed out after {:?}",
                    self.connect_timeout
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let local_ip = tcp.local_addr().ok().map(|a| a.ip());
        let plain = SmtpClient {
            stream: tcp,
            timeout: self.command_timeout,
        };
        let connector = if hop.tls_verify {
            &self.verified
        } else {
            &self.unverified
        };
        let mut client: SmtpClient<Io> = if hop.tls == TlsMode::Implicit {
            let tls =
                tokio::time::timeout(self.connect_timeout, plain.into_tls(connector, &hop.host))
                    .await
                    .map_err(|_| conn_err("TLS handshake timed out".into()))?
                    .map_err(|e| tls_err(&host, e))?;
            boxed(tls)
        } else {
            boxed(plain)
        };
        greeting(&mut client, &host).await?;
        let mut ehlo = ehlo(&mut client, &self.helo, &host).await?;
        if matches!(hop.tls, TlsMode::StartTls | TlsMode::Opportunistic) {
            let offered = ehlo.has_capability(EXT_START_TLS);
            if !offered && hop.tls == TlsMode::StartTls {
                return Err(SmtpError::Tls {
                    host,
                    reason: "STARTTLS is not offered".into(),
                });
            }
            if offered {
                client = starttls(client, connector, &hop.host, &host).await?;
                ehlo = self::ehlo(&mut client, &self.helo, &host).await?;
            }
        }
        if let Some((user, password)) = &hop.credentials {
            let creds = Credentials::new(user.clone(), password.clone());
            client
                .authenticate(&creds, &ehlo)
                .await
                .map_err(|e| SmtpError::Auth {
                    host: host.clone(),
                    reason: describe(&e),
                })?;
        }
        Ok(Conn {
            client,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
            needs_rset: false,
            local_ip,
        })
    }
}

enum ConnectError {
    Bind(SmtpError),
    Io(std::io::Error),
}

/// TCP connect to `addr`, from `source` when given (bound before connecting).
async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    host: &str,
) -> Result<TcpStream, ConnectError> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await.map_err(ConnectError::Io);
    };
    let bind_err = |e: std::io::Error| {
        ConnectError::Bind(SmtpError::Bind {
            host: host.to_string(),
            ip,
            reason: e.to_string(),
        })
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.bind(SocketAddr::new(ip, 0)).map_err(bind_err)?;
    socket.connect(addr).await.map_err(ConnectError::Io)
}

fn boxed<T: IoStream + 'static>(c: SmtpClient<T>) -> SmtpClient<Io> {
    SmtpClient {
        stream: Box::new(c.stream),
        timeout: c.timeout,
    }
}

async fn greeting(client: &mut SmtpClient<Io>, host: &str) -> Result<(), SmtpError> {
    let r = tokio::time::timeout(client.timeout, client.read())
        .await
        .map_err(|_| SmtpError::Connect {
            host: host.to_string(),
            reason: "no greeting (timeout)".into(),
        })?
        .map_err(|e| mail_err(host, e, false))?;
    if r.is_positive_completion() {
        Ok(())
    } else {
        Err(reply_err(host, &r, false))
    }
}

async fn ehlo(
    client: &mut SmtpClient<Io>,
    helo: &str,
    host: &str,
) -> Result<EhloResponse<String>, SmtpError> {
    client
        .ehlo(helo)
        .await
        .map_err(|e| mail_err(host, e, false))
}

/// STARTTLS on a boxed stream: the command, then the handshake on the same stream.
async fn starttls(
    mut client: SmtpClient<Io>,
    connector: &TlsConnector,
    sni: &str,
    host: &str,
) -> Result<SmtpClient<Io>, SmtpError> {
    let r = client
        .cmd(b"STARTTLS\r\n")
        .await
        .map_err(|e| mail_err(host, e, false))?;
    if r.code != 220 {
        return Err(SmtpError::Tls {
            host: host.to_string(),
            reason: format!("STARTTLS refused: {}", reply_line(&r)),
        });
    }
    let name = ServerName::try_from(sni.to_string()).map_err(|_| SmtpError::Tls {
        host: host.to_string(),
        reason: format!("{sni:?} is not a valid TLS server name"),
    })?;
    let timeout = client.timeout;
    let tls = tokio::time::timeout(timeout, connector.connect(name, client.stream))
        .await
        .map_err(|_| SmtpError::Tls {
            host: host.to_string(),
            reason: "TLS handshake timed out".into(),
        })?
        .map_err(|e| SmtpError::Tls {
            host: host.to_string(),
            reason: e.to_string(),
        })?;
    Ok(SmtpClient {
        stream: Box::new(tls),
        timeout,
    })
}

async fn transaction(conn: &mut Conn, hop: &Hop, env: &Envelope<'_>) -> Result<String, SmtpError> {
    let host = hop.host.as_str();
    let mail = format!("MAIL FROM:<{}>\r\n", env.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", env.to);
    let client = &mut conn.client;
    let replies = if conn.pipelining {
        client
            .cmds([mail.as_bytes(), rcpt.as_bytes()])
            .await
            .map_err(|e| mail_err(host, e, true))?
    } else {
        let m = client
            .cmd(mail.as_bytes())
            .await
            .map_err(|e| mail_err(host, e, true))?;
        if !m.is_positive_completion() {
            return Err(reply_err(host, &m, true));
        }
        let r = client
            .cmd(rcpt.as_bytes())
            .await
            .map_err(|e| mail_err(host, e, true))?;
        vec![m, r]
    };
    if let Some(bad) = replies.iter().find(|r| !r.is_positive_completion()) {
        return Err(reply_err(host, bad, true));
    }
    let done = client
        .data(env.body)
        .await
        .map_err(|e| mail_err(host, e, true))?;
    Ok(reply_line(&done))
}

/// `250 2.0.0 Ok: queued as X` (the enhanced code only when the server sent one).
pub fn reply_line(r: &Response<String>) -> String {
    let msg = r.message.replace(['\r', '\n'], " ");
    if r.esc[0] == 0 {
        format!("{} {msg}", r.code)
    } else {
        format!("{} {}.{}.{} {msg}", r.code, r.esc[0], r.esc[1], r.esc[2])
    }
}

fn reply_err(host: &str, r: &Response<String>, in_transaction: bool) -> SmtpError {
    SmtpError::Reply {
        host: host.to_string(),
        code: r.code,
        reply: reply_line(r),
        in_transaction,
    }
}

fn mail_err(host: &str, e: mail_send::Error, in_transaction: bool) -> SmtpError {
    match e {
        mail_send::Error::UnexpectedReply(r) => reply_err(host, &r, in_transaction),
        mail_send::Error::Tls(e) => SmtpError::Tls {
            host: host.to_string(),
            reason: e.to_string(),
        },
        other => SmtpError::Connect {
            host: host.to_string(),
            reason: describe(&other),
        },
    }
}

fn tls_err(host: &str, e: mail_send::Error) -> SmtpError {
    SmtpError::Tls {
        host: host.to_string(),
        reason: describe(&e),
    }
}

fn describe(e: &mail_send::Error) -> String {
    match e {
        mail_send::Error::AuthenticationFailed(r) | mail_send::Error::UnexpectedReply(r) => {
            reply_line(r)
        }
        mail_send::Error::UnparseableReply => "connection closed or unparseable reply".into(),
        other => other.to_string(),
    }
}
