//! Opening a session to a [`Hop`]: bind to the source IP, TCP connect, implicit TLS,
//! greeting, EHLO, STARTTLS (and EHLO again), AUTH. The result is a [`Conn`] ready for MAIL.
//! An `xoauth2` hop gets its token first ([`xoauth2`](super::xoauth2)): without one there
//! is nothing to connect for. Each step goes to [`Steps`] (what `test-relay` prints).
//!
//! Apart from the transaction because its failures mean something else: anything here is
//! about the host, not the recipient, so [`relay`](crate::delivery::relay) tries the next
//! address or host (a connection-level error tries the host's next address first).

use std::net::{IpAddr, SocketAddr};

use mail_send::{Credentials, SmtpClient};
use rustls::pki_types::{CertificateDer, ServerName};
use smtp_proto::{EXT_PIPELINING, EXT_START_TLS, EhloResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use super::error::{SmtpError, describe, mail_err, reply_err, reply_line, tls_err};
use super::xoauth2::{self, Bearer};
use super::{Hop, HopAuth, Pool, Steps, TlsMode};
use crate::delivery::dane::TlsaPolicy;
use crate::delivery::tls_rpt::ResultType;

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
    /// The last EHLO's keywords (`EXT_*` bits), for the ESMTP parameters ([`params`](super::params)).
    pub(super) caps: u32,
    /// TLS is on and the certificate was verified (REQUIRETLS, RFC 8689 §4.2.1).
    pub(super) verified_tls: bool,
}

impl Pool {
    /// A ready session (greeted, EHLO'd, TLS and AUTH done) to the first address that works
    /// (of the source IP's family, when the hop has one).
    pub(super) async fn open(&self, hop: &Hop, steps: &mut Steps) -> Result<Conn, SmtpError> {
        if let Some(TlsaPolicy::Unusable(reason)) = hop.dane.as_deref() {
            if let Some(p) = &hop.tls_policy {
                p.dane_session(&hop.host, Some(ResultType::DnssecInvalid));
            }
            return Err(SmtpError::Tls {
                host: hop.host.clone(),
                reason: reason.clone(),
            });
        }
        let mut bearer = self.bearer(hop, steps).await?;
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
            match self.open_addr(hop, *addr, bearer.as_mut(), steps).await {
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

    async fn open_addr(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        bearer: Option<&mut Bearer>,
        steps: &mut Steps,
    ) -> Result<Conn, SmtpError> {
        let host = format!("{} [{addr}]", hop.host);
        let tcp = self.tcp(hop, addr, &host).await?;
        let local_ip = tcp.local_addr().ok().map(|a| a.ip());
        steps.note(|| {
            format!(
                "connect: {addr} from {}",
                local_ip.map_or_else(|| "?".into(), |ip| ip.to_string())
            )
        });
        let connector = self.connector(hop);
        let mut client = self.implicit_tls(hop, tcp, &connector, &host).await?;
        if hop.tls == TlsMode::Implicit {
            steps.note(|| format!("TLS: ok ({})", self.trust_note(hop)));
        }
        let hello = greeting(&mut client, &host).await?;
        steps.note(|| format!("greeting: {hello}"));
        let mut ehlo = ehlo(&mut client, &self.helo, &host).await?;
        steps.note(|| ehlo_note(&self.helo, &ehlo));
        let mut tls = hop.tls == TlsMode::Implicit;
        if matches!(hop.tls, TlsMode::StartTls | TlsMode::Opportunistic) {
            let offered = ehlo.has_capability(EXT_START_TLS);
            // DANE takes precedence over MTA-STS (RFC 8461 §2): a hop with TLSA records
            // is checked by its DaneVerifier, not by the MTA-STS policy.
            let sts = hop.tls_policy.as_ref().filter(|_| hop.dane.is_none());
            // …and counted for TLS-RPT as a `tlsa` session.
            let dane_rpt = hop.tls_policy.as_ref().filter(|_| hop.dane.is_some());
            let mut chain = None;
            if offered {
                let started = starttls(client, &connector, &hop.host, &host).await;
                if let (Err(_), Some(p)) = (&started, sts) {
                    p.handshake_failed(&hop.host);
                }
                if let Some(p) = dane_rpt {
                    let failure = started.as_ref().err().map(|_| ResultType::TlsaInvalid);
                    p.dane_session(&hop.host, failure);
                }
                let (c, certs) = started?;
                client = c;
                chain = Some(certs);
            }
            // Before any command on the new session: an enforced policy refuses here.
            if let Some(p) = sts {
                p.check(&hop.host, chain.as_deref())
                    .map_err(|f| SmtpError::Tls {
                        host: host.clone(),
                        reason: f.reason,
                    })?;
            }
            if let (false, Some(p)) = (offered, dane_rpt) {
                p.dane_session(&hop.host, Some(ResultType::StartTlsNotSupported));
            }
            if !offered && (hop.tls == TlsMode::StartTls || hop.dane.is_some()) {
                return Err(SmtpError::Tls {
                    host,
                    reason: if hop.dane.is_some() {
                        "STARTTLS is not offered, but the host publishes TLSA records (DANE)"
                    } else {
                        "STARTTLS is not offered"
                    }
                    .into(),
                });
            }
            if offered {
                steps.note(|| format!("STARTTLS: ok ({})", self.trust_note(hop)));
                ehlo = self::ehlo(&mut client, &self.helo, &host).await?;
                steps.note(|| ehlo_note(&self.helo, &ehlo));
                tls = true;
            }
        }
        match (&hop.credentials, bearer) {
            (Some(HopAuth::Password { user, password }), _) => {
                let creds = Credentials::new(user.clone(), password.expose().to_string());
                client
                    .authenticate(&creds, &ehlo)
                    .await
                    .map_err(|e| SmtpError::Auth {
                        host: host.clone(),
                        reason: describe(&e),
                    })?;
                steps.note(|| format!("AUTH as {user}: ok"));
            }
            (Some(HopAuth::XOauth2 { user, .. }), Some(bearer)) => {
                xoauth2::login(&mut client, &ehlo, user, bearer, &host, steps).await?;
            }
            // open() fetched the token before connecting; without one it returned.
            (Some(HopAuth::XOauth2 { .. }), None) => {
                return Err(SmtpError::Token {
                    host,
                    reason: "no token was fetched".into(),
                });
            }
            (None, _) => {}
        }
        Ok(Conn {
            client,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
            needs_rset: false,
            local_ip,
            caps: ehlo.capabilities,
            verified_tls: tls && hop.tls_verify,
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

    /// How the certificate was judged, for [`Steps`].
    fn trust_note(&self, hop: &Hop) -> &'static str {
        if hop.tls_verify && hop.ca_file.is_some() {
            "certificate verified (webpki roots and ca_file)"
        } else if hop.tls_verify {
            "certificate verified"
        } else {
            "certificate not verified: tls_verify = false"
        }
    }

    /// The certificate check of `hop`: its DANE policy's, else webpki roots or none.
    fn connector(&self, hop: &Hop) -> TlsConnector {
        // RFC 8689 §4.2.1: REQUIRETLS (`tls_verify` on an MX hop) wants the certificate
        // verified by DANE or a trusted chain. DANE without a usable TLSA record checks
        // nothing (RFC 7672 §2.2), so there the chain is checked as for any verified hop.
        let checks_nothing = matches!(hop.dane.as_deref(), Some(TlsaPolicy::Encrypt));
        if let Some(dane) = hop
            .dane
            .as_ref()
            .filter(|_| !(checks_nothing && hop.tls_verify))
            .and_then(|p| p.connector(&self.unverified))
        {
            return dane;
        }
        if hop.tls_verify {
            match &hop.ca_file {
                // Built per new connection only: sessions are pooled and reused.
                Some(ca) => crate::delivery::tls_client::connector_with_ca(ca),
                None => self.verified.clone(),
            }
        } else {
            self.unverified.clone()
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

/// The server's greeting line.
async fn greeting(client: &mut SmtpClient<Io>, host: &str) -> Result<String, SmtpError> {
    let r = tokio::time::timeout(client.timeout, client.read())
        .await
        .map_err(|_| SmtpError::Connect {
            host: host.to_string(),
            reason: "no greeting (timeout)".into(),
        })?
        .map_err(|e| mail_err(host, e, false))?;
    if r.is_positive_completion() {
        Ok(reply_line(&r))
    } else {
        Err(reply_err(host, &r, false))
    }
}

/// `EHLO mx.example.test: 250 smtp.host (STARTTLS, PIPELINING, AUTH PLAIN XOAUTH2)`.
fn ehlo_note(helo: &str, ehlo: &EhloResponse<String>) -> String {
    let mut caps = Vec::new();
    for (bit, name) in [(EXT_START_TLS, "STARTTLS"), (EXT_PIPELINING, "PIPELINING")] {
        if ehlo.has_capability(bit) {
            caps.push(name.to_string());
        }
    }
    if ehlo.auth_mechanisms != 0 {
        caps.push(format!(
            "AUTH {}",
            xoauth2::mechanisms(ehlo.auth_mechanisms)
        ));
    }
    if caps.is_empty() {
        return format!("EHLO {helo}: 250 {}", ehlo.hostname);
    }
    format!("EHLO {helo}: 250 {} ({})", ehlo.hostname, caps.join(", "))
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

/// STARTTLS on a boxed stream: the command, then the handshake on the same stream. With
/// the session, the certificates the server presented (what a TLS policy checks).
async fn starttls(
    mut client: SmtpClient<Io>,
    connector: &TlsConnector,
    sni: &str,
    host: &str,
) -> Result<(SmtpClient<Io>, Vec<CertificateDer<'static>>), SmtpError> {
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
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    Ok((
        SmtpClient {
            stream: Box::new(tls),
            timeout,
        },
        chain,
    ))
}
