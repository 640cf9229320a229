//! Opening a session to a [`Hop`]: bind to the source IP, TCP connect, implicit TLS,
//! greeting, EHLO, STARTTLS (and EHLO again), AUTH. The result is a [`Conn`] ready for MAIL.
//!
//! Apart from the transaction because its failures mean something else: anything here is
//! about the host, not the recipient, so [`relay`](crate::delivery::relay) tries the next
//! address or host (a connection-level error tries the host's next address first).

use std::net::{IpAddr, SocketAddr};

use mail_send::{Credentials, SmtpClient};
use rustls::pki_types::ServerName;
use smtp_proto::{EXT_PIPELINING, EXT_START_TLS, EhloResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::error::{SmtpError, describe, mail_err, reply_err, reply_line, tls_err};
use super::{Hop, Pool, TlsMode};

pub(super) type Io = Box<dyn IoStream>;
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

/// A ready session: greeted, EHLO'd, TLS and AUTH done.
pub(super) struct Conn {
    pub(super) client: SmtpClient<Io>,
    pub(super) pipelining: bool,
    /// The last transaction failed midway: RSET before the next MAIL (after a completed
    /// one, RFC 5321 §4.1.4 lets the next MAIL follow directly — one round trip saved).
    pub(super) needs_rset: bool,
    /// Our end of the connection: the `sending_ip` of what it carries.
    pub(super) local_ip: Option<IpAddr>,
}

impl Pool {
    /// A ready session (greeted, EHLO'd, TLS and AUTH done) to the first address that works
    /// (of the source IP's family, when the hop has one).
    pub(super) async fn open(&self, hop: &Hop) -> Result<Conn, SmtpError> {
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
                missing: false,
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
        let tcp = self.tcp(hop, addr, &host).await?;
        let local_ip = tcp.local_addr().ok().map(|a| a.ip());
        let connector = self.connector(hop);
        let mut client = self.implicit_tls(hop, tcp, connector, &host).await?;
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

    /// TCP connect within `relay.connect_timeout`, from the hop's source IP when it has one.
    async fn tcp(&self, hop: &Hop, addr: SocketAddr, host: &str) -> Result<TcpStream, SmtpError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, connect(addr, hop.source, host))
            .await
        {
            Ok(Err(ConnectError::Bind(e))) => return Err(e),
            Ok(Ok(tcp)) => tcp,
            Ok(Err(ConnectError::Io(e))) => return Err(conn_err(host, e.to_string())),
            Err(_) => {
                return Err(conn_err(
                    host,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ));
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    fn connector(&self, hop: &Hop) -> &TlsConnector {
        if hop.tls_verify {
            &self.verified
        } else {
            &self.unverified
        }
    }

    /// The SMTP client on `tcp`: TLS from the first byte for [`TlsMode::Implicit`], else plain.
    async fn implicit_tls(
        &self,
        hop: &Hop,
        tcp: TcpStream,
        connector: &TlsConnector,
        host: &str,
    ) -> Result<SmtpClient<Io>, SmtpError> {
        let plain = SmtpClient {
            stream: tcp,
            timeout: self.command_timeout,
        };
        if hop.tls != TlsMode::Implicit {
            return Ok(boxed(plain));
        }
        let tls = tokio::time::timeout(self.connect_timeout, plain.into_tls(connector, &hop.host))
            .await
            .map_err(|_| conn_err(host, "TLS handshake timed out".into()))?
            .map_err(|e| tls_err(host, e))?;
        Ok(boxed(tls))
    }
}

fn conn_err(host: &str, reason: String) -> SmtpError {
    SmtpError::Connect {
        host: host.to_string(),
        reason,
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
            missing: e.kind() == std::io::ErrorKind::AddrNotAvailable,
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
