//! What happens between accept and the banner on the inbound listener (postscreen's job in
//! Postfix): the pregreet test (`smtp.greet_delay`) and the DNSBL verdict. A client that
//! fails either gets one final reply instead of the 220 and is disconnected, before it can
//! issue a single command.
//!
//! Submission listeners skip this: their clients authenticate, and a banner delay would
//! only slow the ERP down.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::info;

use super::io::Conn;
use super::{Session, reply};
use crate::envelope::ListenerKind;
use crate::reply::Reply;

impl Session {
    /// The reply to send instead of the banner, if the client fails a connect check.
    pub(super) async fn before_banner<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> io::Result<Option<Reply>> {
        if self.kind != ListenerKind::Inbound {
            return Ok(None);
        }
        if self.pregreeted(conn).await? {
            info!("client spoke before the banner");
            self.ctx.metrics.smtp_policy("pregreet", "reject");
            return Ok(Some(reply::PREGREET));
        }
        Ok(None)
    }

    /// Waits `smtp.greet_delay` for silence; true when the client sent something first.
    /// The bytes stay unread: the session ends here anyway.
    async fn pregreeted<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
    ) -> io::Result<bool> {
        let delay = self.ctx.config.smtp.greet_delay.get();
        if delay.is_zero() {
            return Ok(false);
        }
        let deadline = Instant::now() + delay;
        tokio::select! {
            r = conn.read_more(deadline) => match r {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
                Err(e) => Err(e),
            },
            // Shutdown during the delay: the banner loop answers 421 right away.
            () = self.ctx.shutdown.cancelled() => Ok(false),
        }
    }
}
