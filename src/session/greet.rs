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

use super::dnsbl::Verdict;
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
        let ip = self.peer.addr.ip();
        let ctx = self.ctx.clone();
        // Trusted networks are ours (Postfix: permit_mynetworks before any RBL).
        let lists = async {
            if self.peer_is_trusted() {
                Verdict::default()
            } else {
                ctx.dnsbl.check(ip).await
            }
        };
        // The lists are asked while the greet delay runs, as postscreen does.
        let (pregreeted, verdict) = tokio::join!(self.pregreeted(conn), lists);
        let metrics = &self.ctx.metrics;
        if pregreeted? {
            info!("client spoke before the banner");
            metrics.smtp_policy("pregreet", "reject");
            return Ok(Some(reply::PREGREET));
        }
        if let Some(zone) = verdict.reject {
            info!(zone, "client on a DNSBL: refused");
            metrics.smtp_policy("dnsbl", "reject");
            let text = format!(
                "{} client [{ip}] blocked using {zone}",
                reply::DNSBL_BLOCKED.text
            );
            return Ok(Some(reply::DNSBL_BLOCKED.with_text(text)));
        }
        if verdict.allowed {
            metrics.smtp_policy("dnsbl", "allow");
        }
        self.dnsbl_header = verdict.header(ip);
        if self.dnsbl_header.is_some() {
            info!(tags = ?verdict.tags, "client on a DNSBL: mail tagged");
            metrics.smtp_policy("dnsbl", "tag");
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
