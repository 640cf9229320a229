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
//! - ESMTP parameters ([`params`]): SMTPUTF8, BODY, DSN's RET/ENVID/NOTIFY/ORCPT and
//!   REQUIRETLS passed on as far as the hop offers them; where a message needs what the hop
//!   lacks, nothing is sent ([`SmtpError::Unsupported`], [`SmtpError::RequireTls`]).
//! - DANE (RFC 7672): a hop with a [`TlsaPolicy`] needs STARTTLS and a certificate that
//!   matches its TLSA records ([`dane`](super::dane)); no STARTTLS or no match fails the
//!   hop (the recipient is deferred), never plaintext.
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
//!
//! The code is split by what can go wrong where: [`pool`] (idle connections, the pool key,
//! per-destination permits — no I/O), [`open`] (source-IP bind, connect, greeting, EHLO,
//! STARTTLS, AUTH — failures here try the next address or host), [`transaction`] (MAIL,
//! RCPT, DATA), [`error`] ([`SmtpError`] and the one mapping of mail-send errors and replies
//! to it, shared by `open` and `transaction` so neither imports the other). This file keeps
//! the types the rest of delivery sees and the [`Pool`] entry points. AUTH XOAUTH2, with
//! its token from [`oauth2`](super::oauth2) and one retry on a refused token, is
//! [`xoauth2`].

mod error;
mod open;
mod params;
mod pool;
mod transaction;
mod xoauth2;

pub use error::{SmtpError, reply_line};
pub use open::IoStream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::dane::TlsaPolicy;
use super::oauth2::Tokens;
use super::tls_client::connector;
use super::tls_policy::SessionPolicy;
use crate::config::{CaFile, RelayConfig, Secret};
use crate::envelope::esmtp::{MessageParams, RcptParams};
use open::Conn;

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
    /// How to AUTH; `None` = no AUTH.
    pub credentials: Option<HopAuth>,
    /// Concurrency key: the smart host name, or the recipient domain for MX delivery.
    pub dest: String,
    /// Local address to connect from (the stream's source IP); `None` = the OS picks.
    pub source: Option<IpAddr>,
    /// Direct MX: the recipient domain's TLS policy (MTA-STS), checked after STARTTLS and
    /// counted for TLS-RPT; `None` for smart hosts.
    pub tls_policy: Option<Arc<SessionPolicy>>,
    /// DANE's demand on this MX host (RFC 7672), which overrides `tls`/`tls_verify`:
    /// STARTTLS mandatory, the certificate checked against the TLSA records; `None` =
    /// no secure TLSA RRset.
    pub dane: Option<Arc<TlsaPolicy>>,
    /// A smart host's `ca_file` (an MX host's: `relay.mta_sts.ca_file`): trusted besides
    /// the webpki roots when `tls_verify`.
    pub ca_file: Option<CaFile>,
    /// Direct MX: the MX RRset was DNSSEC-validated (RFC 8689 §4.2.1).
    pub mx_secure: bool,
    /// Direct MX: the domain's MTA-STS policy (`enforce` or `testing`) names this host.
    pub sts_authorised: bool,
}

/// A smart host's login.
#[derive(Clone, Debug)]
pub enum HopAuth {
    /// AUTH PLAIN or LOGIN.
    Password { user: String, password: Secret },
    /// AUTH XOAUTH2 for mailbox `user`, the token from smart host `smarthost`'s cache.
    XOauth2 { user: String, smarthost: String },
}

impl HopAuth {
    pub fn user(&self) -> &str {
        match self {
            HopAuth::Password { user, .. } | HopAuth::XOauth2 { user, .. } => user,
        }
    }
}

/// What `mxgate test-relay` shows: a line per step of opening a session (token, connect,
/// greeting, EHLO, STARTTLS, AUTH). Deliveries record nothing.
#[derive(Debug, Default)]
pub struct Steps(Option<Vec<String>>);

impl Steps {
    pub fn recorded() -> Steps {
        Steps(Some(Vec::new()))
    }

    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.0 {
            lines.push(line());
        }
    }

    pub fn lines(self) -> Vec<String> {
        self.0.unwrap_or_default()
    }
}

/// One transaction's envelope and content.
pub struct Envelope<'a> {
    /// Reverse path; empty for the null sender.
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a [u8],
    /// The message's MAIL parameters and the recipient's RCPT parameters, passed on as far
    /// as the hop offers them ([`params`]).
    pub esmtp: &'a MessageParams,
    pub rcpt: &'a RcptParams,
}

/// A hop took the message.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Its final reply (`250 2.0.0 Ok: queued as X`).
    pub reply: String,
}

impl Hop {
    /// This hop for a REQUIRETLS message (RFC 8689 §4.2.1): TLS required, certificate
    /// verified, whatever the hop's own settings. An MX host qualifies only when the MX
    /// lookup was DNSSEC-validated (DANE state) or an MTA-STS policy names it: otherwise
    /// a forged MX answer could send the message to any host with a valid certificate.
    pub fn requiring_tls(&self) -> Result<Hop, SmtpError> {
        if self.dest.starts_with("mx:") && !self.mx_secure && !self.sts_authorised {
            return Err(SmtpError::RequireTls {
                host: self.host.clone(),
                reason: "MX host not authenticated (MX answer not DNSSEC-validated, \
                         no MTA-STS policy names it)"
                    .into(),
            });
        }
        let tls = match self.tls {
            TlsMode::Implicit => TlsMode::Implicit,
            TlsMode::StartTls | TlsMode::Opportunistic | TlsMode::None => TlsMode::StartTls,
        };
        Ok(Hop {
            tls,
            tls_verify: true,
            ..self.clone()
        })
    }
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
    tokens: Tokens,
    conns: Mutex<HashMap<String, Vec<(Conn, Instant)>>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Pool {
    /// `tokens`: the caches of the `xoauth2` smart hosts.
    pub fn new(cfg: &RelayConfig, helo: &str, tokens: Tokens) -> Pool {
        Pool {
            helo: helo.to_string(),
            connect_timeout: cfg.connect_timeout.get(),
            command_timeout: cfg.command_timeout.get(),
            idle: cfg.connection_idle.get(),
            per_dest: cfg.destination_concurrency.max(1),
            verified: connector(true),
            unverified: connector(false),
            tokens,
            conns: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// One transaction to `hop`: the final reply (`250 2.0.0 Ok: queued as X`), with the
    /// local (sending) IP address of the connection used, also when the transaction failed
    /// after connecting (a 5xx is counted per sending IP too).
    pub async fn send(
        &self,
        hop: &Hop,
        env: &Envelope<'_>,
    ) -> (Result<Accepted, SmtpError>, Option<IpAddr>) {
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
        match self.open(hop, &mut Steps::default()).await {
            Ok(conn) => self.run(key, conn, hop, env).await,
            Err(e) => (Err(e), None),
        }
    }

    /// Connect, greeting, EHLO, TLS, AUTH, then QUIT: the "Test Connection" button. Each
    /// step done goes to `steps`, also when a later one fails.
    pub async fn probe(&self, hop: &Hop, steps: &mut Steps) -> Result<String, SmtpError> {
        let conn = self.open(hop, steps).await?;
        let secured = hop.tls != TlsMode::None;
        let _ = conn.client.quit().await;
        let auth = match &hop.credentials {
            Some(HopAuth::Password { .. }) => ", AUTH ok",
            Some(HopAuth::XOauth2 { .. }) => ", AUTH XOAUTH2 ok",
            None => "",
        };
        Ok(format!(
            "{}: connected{}{auth}",
            hop.label,
            if secured { ", TLS ok" } else { "" },
        ))
    }
}
