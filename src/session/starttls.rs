//! STARTTLS (RFC 3207) and implicit TLS (submissions, RFC 8314): where the stream under
//! a [`Session`] changes. The verb's checks, the handshake within the idle timeout, and
//! the reset the upgrade requires (input pipelined behind STARTTLS is dropped, the client
//! starts over with EHLO).
//!
//! Out of `mod.rs` so that file stays the command loop; like the other verbs, this file
//! decides the reply and the next state, and `mod.rs` does the I/O it asks for.

use tokio::net::TcpStream;
use tracing::info;

use super::{Next, Session, State, Step, reply};

impl Session {
    pub(super) async fn serve_plain(&mut self, tcp: TcpStream) -> std::io::Result<()> {
        let mut conn = self.conn(tcp);
        if let Some(refusal) = self.before_banner(&mut conn).await? {
            conn.queue_reply(&refusal);
            conn.close().await;
            return Ok(());
        }
        conn.queue_reply(&self.greeting());
        match self.run(&mut conn).await? {
            Next::Close => conn.close().await,
            Next::StartTls => {
                let dropped = conn.buffered().len();
                if dropped > 0 {
                    info!(
                        bytes = dropped,
                        "discarding input pipelined behind STARTTLS"
                    );
                }
                let tls = self.handshake(conn.into_inner()).await?;
                self.tls_started();
                let mut conn = self.conn(tls);
                // A second STARTTLS is refused in-session, so this ends with Close.
                let _ = self.run(&mut conn).await?;
                conn.close().await;
            }
        }
        Ok(())
    }

    pub(super) async fn serve_implicit_tls(&mut self, tcp: TcpStream) -> std::io::Result<()> {
        let tls = self.handshake(tcp).await?;
        self.peer.tls = true;
        let mut conn = self.conn(tls);
        conn.queue_reply(&self.greeting());
        let _ = self.run(&mut conn).await?;
        conn.close().await;
        Ok(())
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let acceptor = self
            .ctx
            .tls
            .clone()
            .ok_or_else(|| std::io::Error::other("TLS is not configured"))?;
        let timeout = self.ctx.config.smtp.idle_timeout.get();
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed");
                Err(e)
            }
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// RFC 3207 §4.2: after the handshake the client must start over with EHLO.
    pub(super) fn tls_started(&mut self) {
        self.peer.tls = true;
        self.peer.helo = None;
        self.state = State::Connected;
        self.esmtp = false;
        self.sasl = None;
    }
    pub(super) fn starttls(&mut self) -> Step {
        let reply = if self.peer.tls {
            reply::TLS_ALREADY_ACTIVE
        } else if self.ctx.tls.is_none() {
            reply::TLS_NOT_AVAILABLE
        } else if matches!(self.state, State::Connected) {
            reply::NEED_EHLO
        } else {
            return Step::StartTls;
        };
        Step::Reply(reply)
    }
}
