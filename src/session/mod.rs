//! Stage ① — SMTP in: inbound (MX), submission and submissions listeners.
//!
//! Input: an accepted TCP connection ([`listener`]). Output: [`NewMessage`]s handed to
//! [`Queue::enqueue`](crate::queue::Queue::enqueue) — and a reply for every command.
//!
//! One [`Session`] per connection runs read → parse ([`command`]) → dispatch (one file
//! per verb: [`ehlo`], [`mail`], [`rcpt`], [`data`], [`sasl`], [`starttls`]) → write, over
//! plain TCP or TLS. On the inbound listener, [`greet`] runs postscreen's checks before the
//! banner (pregreet, [`dnsbl`]); [`rates`] counts connections, messages and recipients per
//! client and network, and messages per submission login. Invariants:
//! - 250 after DATA/BDAT LAST only once `enqueue` returned, i.e. the message is fsync'd;
//! - only `<CRLF>.<CRLF>` ends DATA ([`body`]); bare LF/CR is refused;
//! - input pipelined behind STARTTLS is discarded, and the session starts over (new EHLO);
//! - RCPT outside the alias domains is `550 5.7.1`, relaying tricks are never interpreted;
//! - peer input never panics the server; misbehaviour is logged at info/debug.
//!
//! [`NewMessage`]: crate::queue::NewMessage

pub mod body;
pub mod command;
mod data;
pub mod dnsbl;
mod ehlo;
mod greet;
mod io;
pub mod listener;
mod mail;
pub mod prep;
pub mod rates;
mod rcpt;
mod sasl;
mod scan;
mod starttls;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::Config;
use crate::envelope::{Address, Destination, ListenerKind, Peer};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::routing::Router;

use crate::reply::{self, Reply};
use command::{Command, MailFrom};
use io::{Conn, Input};
use listener::Shared;

/// What a session works with: one config and what is built from it, plus the server's
/// stores. The server builds one at start and one per reload; a session keeps the one that
/// was current when its connection was accepted.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub router: Arc<Router>,
    pub queue: Queue,
    pub metrics: Metrics,
    /// STARTTLS / implicit TLS; `None` only in tests that run without a certificate.
    pub tls: Option<TlsAcceptor>,
    /// Suppressed recipients are refused on submission ([`rcpt`]).
    pub suppressions: crate::suppression::SuppressionList,
    /// Sending domains suspended for their bounce rate are refused at MAIL ([`mail`]).
    pub suspensions: crate::suspension::Suspensions,
    /// Issues and checks `unsubscribe+TOKEN` / one-click unsubscribe tokens.
    pub token_key: crate::routing::token::TokenKey,
    /// Warming caps: with `warming.tempfail`, MAIL is 451 once the day's cap is spent ([`mail`]).
    pub warming: Option<crate::delivery::warming::Warming>,
    /// DKIM keys for submitted mail ([`prep`]).
    pub signer: Arc<crate::auth::sign::Signer>,
    /// Inbound SPF/DKIM/DMARC/ARC/iprev (`session/verify.rs`); one resolver and cache per server.
    pub verifier: Arc<crate::auth::Verifier>,
    /// rspamd (`session/scan.rs`); `None` while `spam.rspamd_url` is empty.
    pub spam: Option<Arc<crate::spam::Scanner>>,
    /// `[[spam.dnsbl]]` zones asked at connect on the inbound listener ([`greet`]).
    pub dnsbl: Arc<dnsbl::Dnsbl>,
    /// Per-client and per-login rates ([`rates`]).
    pub rates: Arc<rates::Rates>,
    /// Where a login over its hourly cap is reported (`rate_limited`).
    pub events: crate::events::Events,
    /// Cancelled on SIGTERM: listeners stop accepting, sessions answer 421 at the next command.
    pub shutdown: CancellationToken,
}

/// RFC 4954 §4: an AUTH command line (initial response included) may be 12288 octets.
pub const AUTH_LINE_BYTES: usize = 12288;

/// Where the session is in the SMTP dialogue (RFC 5321 §4.1.4 ordering).
#[derive(Debug)]
enum State {
    /// New connection, or TLS just started: EHLO/HELO first.
    Connected,
    /// Greeted, no transaction.
    Greeted,
    /// MAIL accepted: recipients and then DATA or BDAT.
    Mail(Box<Transaction>),
}

#[derive(Debug)]
struct Transaction {
    mail: MailFrom,
    recipients: Vec<(Address, Destination)>,
    /// RCPT's NOTIFY/ORCPT, one per entry of `recipients`.
    rcpt_params: Vec<crate::envelope::esmtp::RcptParams>,
    /// Content of the BDAT chunks so far; `Some` also means DATA is no longer allowed.
    chunks: Option<body::Body>,
}

/// What the loop does after a command.
enum Step {
    Reply(Reply),
    StartTls,
}

/// Why [`Session::run`] returned.
enum Next {
    Close,
    StartTls,
}

/// One SMTP connection's protocol state (the stream lives in [`Conn`], so the same session
/// continues over TLS after STARTTLS).
pub(crate) struct Session {
    ctx: Arc<SessionContext>,
    shared: Arc<Shared>,
    kind: ListenerKind,
    peer: Peer,
    state: State,
    /// EHLO (not HELO) was used: `with ESMTP` in Received.
    esmtp: bool,
    /// Failed commands so far; `smtp.max_errors` of them close the session.
    errors: usize,
    /// An AUTH exchange waiting for the client's next line.
    sasl: Option<sasl::Exchange>,
    /// `X-Mxgate-Dnsbl` for this client's mail: a `tag` zone lists it ([`greet`]).
    dnsbl_header: Option<String>,
}

impl Session {
    pub(crate) fn new(
        ctx: Arc<SessionContext>,
        shared: Arc<Shared>,
        kind: ListenerKind,
        peer: Peer,
    ) -> Session {
        Session {
            ctx,
            shared,
            kind,
            peer,
            state: State::Connected,
            esmtp: false,
            errors: 0,
            sasl: None,
            dnsbl_header: None,
        }
    }

    /// Runs the whole connection: greeting, commands, STARTTLS or implicit TLS, close.
    pub(crate) async fn handle(mut self, tcp: TcpStream) {
        let result = if self.kind == ListenerKind::Submissions {
            self.serve_implicit_tls(tcp).await
        } else {
            self.serve_plain(tcp).await
        };
        match result {
            Ok(()) => debug!("session closed"),
            Err(e) => debug!(error = %e, "session ended"),
        }
    }
    fn conn<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) -> Conn<S> {
        let smtp = &self.ctx.config.smtp;
        // The reader takes lines up to the AUTH limit; other commands are held to
        // `max_line_bytes` in `run` (one reader, two limits).
        let max = smtp.max_line_bytes.max(AUTH_LINE_BYTES);
        Conn::new(io, max, smtp.idle_timeout.get())
    }

    /// A command line over `smtp.max_line_bytes` (RFC 5321 §4.5.3.1.4), except AUTH and
    /// SASL responses, which RFC 4954 §4 allows up to [`AUTH_LINE_BYTES`].
    fn too_long(&self, line: &[u8]) -> bool {
        line.len() > self.ctx.config.smtp.max_line_bytes
            && self.sasl.is_none()
            && !line
                .get(..5)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "))
    }

    fn greeting(&self) -> Reply {
        let host = &self.ctx.config.server.hostname;
        reply::GREETING.with_text(format!("{host} {}", reply::GREETING.text))
    }

    /// The command loop, until the session closes or STARTTLS is accepted.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> std::io::Result<Next> {
        loop {
            let line = match self.read_command(conn).await {
                Ok(Input::Line(line)) if !self.too_long(&line) => line,
                Ok(Input::Line(_) | Input::TooLong) => {
                    info!("command line too long");
                    if self.respond(conn, reply::LINE_TOO_LONG) {
                        return Ok(Next::Close);
                    }
                    continue;
                }
                Ok(Input::Eof) => return Ok(Next::Close),
                Ok(Input::Shutdown) => {
                    conn.queue_reply(&reply::SHUTTING_DOWN);
                    return Ok(Next::Close);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    info!("idle timeout");
                    conn.queue_reply(&reply::IDLE_TIMEOUT);
                    return Ok(Next::Close);
                }
                Err(e) => return Err(e),
            };
            if self.ctx.shutdown.is_cancelled() {
                conn.queue_reply(&reply::SHUTTING_DOWN);
                return Ok(Next::Close);
            }
            match self.dispatch(&line, conn).await? {
                Step::Reply(r) => {
                    if self.respond(conn, r) {
                        return Ok(Next::Close);
                    }
                }
                Step::StartTls => {
                    conn.queue_reply(&reply::READY_TO_START_TLS);
                    conn.flush().await?;
                    return Ok(Next::StartTls);
                }
            }
        }
    }

    /// The next command line: from the buffer if pipelined, else read within the idle
    /// timeout. Waiting ends early on shutdown.
    async fn read_command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> std::io::Result<Input> {
        let deadline = Instant::now() + self.ctx.config.smtp.idle_timeout.get();
        loop {
            if let Some(input) = conn.take_line() {
                return Ok(input);
            }
            conn.flush().await?;
            if self.ctx.shutdown.is_cancelled() {
                return Ok(Input::Shutdown);
            }
            tokio::select! {
                n = conn.read_more(deadline) => {
                    if n? == 0 {
                        return Ok(Input::Eof);
                    }
                }
                () = self.ctx.shutdown.cancelled() => return Ok(Input::Shutdown),
            }
        }
    }

    /// Queues `reply`; true when the session must close after it.
    fn respond<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        reply: Reply,
    ) -> bool {
        conn.queue_reply(&reply);
        if reply.close {
            return true;
        }
        // Recipient-limit 452s are the client batching, not misbehaving (Postfix does not
        // count them either).
        if reply.code >= 400 && reply != reply::TOO_MANY_RECIPIENTS {
            self.errors += 1;
            let max = self.ctx.config.smtp.max_errors;
            if max > 0 && self.errors >= max {
                info!(errors = self.errors, "too many errors");
                conn.queue_reply(&reply::TOO_MANY_ERRORS);
                return true;
            }
        }
        false
    }

    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        line: &[u8],
        conn: &mut Conn<S>,
    ) -> std::io::Result<Step> {
        if let Some(exchange) = self.sasl.take() {
            return Ok(Step::Reply(sasl::step(self, exchange, line).await));
        }
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                debug!(error = %e, "bad command");
                if e == command::CommandError::RelayAttempt {
                    info!("relaying attempt refused");
                    self.ctx
                        .metrics
                        .inbound_recipient("rejected", "relay_denied");
                }
                return Ok(Step::Reply(e.reply()));
            }
        };
        debug!(command = verb(&cmd), "command");
        let reply = match cmd {
            Command::Ehlo(name) => ehlo::ehlo(self, name, true),
            Command::Helo(name) => ehlo::ehlo(self, name, false),
            Command::Mail(m) => mail::mail(self, m),
            Command::Rcpt(r) => rcpt::rcpt(self, r),
            Command::Data => data::data(self, conn).await?,
            Command::Bdat { size, last } => data::bdat(self, conn, size, last).await?,
            Command::Rset => {
                self.reset();
                reply::RESET_OK
            }
            Command::Noop => reply::OK,
            Command::Quit => reply::CLOSING,
            Command::Vrfy => reply::VRFY_CANNOT_VERIFY,
            Command::Help => reply::HELP,
            Command::StartTls => return Ok(self.starttls()),
            Command::Auth { mechanism, initial } => sasl::auth(self, &mechanism, initial).await,
        };
        Ok(Step::Reply(reply))
    }

    /// RSET (RFC 5321 §4.1.1.5): drop the transaction, keep the greeting.
    fn reset(&mut self) {
        if !matches!(self.state, State::Connected) {
            self.state = State::Greeted;
        }
    }

    /// `relay.trusted_networks` (Postfix mynetworks) may submit without AUTH.
    fn peer_is_trusted(&self) -> bool {
        let ip = self.peer.addr.ip();
        self.ctx
            .config
            .relay
            .trusted_networks
            .iter()
            .any(|n| n.contains(&ip))
    }

    fn data_timeout(&self) -> Duration {
        self.ctx.config.smtp.data_timeout.get()
    }
}

/// Verb name for debug logs (never arguments: AUTH lines carry credentials).
fn verb(cmd: &Command) -> &'static str {
    match cmd {
        Command::Ehlo(_) => "EHLO",
        Command::Helo(_) => "HELO",
        Command::Mail(_) => "MAIL",
        Command::Rcpt(_) => "RCPT",
        Command::Data => "DATA",
        Command::Bdat { .. } => "BDAT",
        Command::Rset => "RSET",
        Command::Noop => "NOOP",
        Command::Quit => "QUIT",
        Command::Vrfy => "VRFY",
        Command::Help => "HELP",
        Command::StartTls => "STARTTLS",
        Command::Auth { .. } => "AUTH",
    }
}
