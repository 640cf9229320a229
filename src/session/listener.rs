//! Accept loop for one listener: connection limits, then a [`Session`] per connection on the
//! server's task tracker. Implicit TLS (submissions) is started by the session itself, so a
//! slow handshake never blocks accepting.
//!
//! Limits (like Postfix `smtpd_client_connection_count_limit` / `process_limit`): over
//! `smtp.max_connections` or `smtp.max_connections_per_ip`, the client gets `421 4.7.0`
//! and is disconnected. They are counted per listener (as Postfix counts per service),
//! so a burst on the MX port cannot lock the ERP out of submission.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::rates::Counted;
use super::{Session, SessionContext};
use crate::envelope::{ListenerKind, Peer};
use crate::live::View;
use crate::reply::{self, Reply};

/// How long AUTH failures from one address are remembered.
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Bound on the failure map (an address spray must not grow it without limit).
const AUTH_FAILURE_ENTRIES: usize = 10_000;

/// Accepts connections until the contexts' `shutdown` is cancelled; every session is
/// spawned on `tracker` so the server can wait for them to drain. Each connection takes the
/// context current when it is accepted and keeps it to the end (a reload in between does
/// not change its routing, certificate or limits); the socket itself is never reopened.
pub async fn serve(
    kind: ListenerKind,
    tcp: TcpListener,
    contexts: View<SessionContext>,
    tracker: TaskTracker,
) {
    match tcp.local_addr() {
        Ok(addr) => info!(listener = %kind.as_str(), addr = %addr, "listening"),
        Err(e) => warn!(listener = %kind.as_str(), error = %e, "listening on an unknown address"),
    }
    let shared = Arc::new(Shared::default());
    // One token for the server's life, the same in every context.
    let shutdown = contexts.get().shutdown.clone();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = tcp.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on the error.
                warn!(listener = %kind.as_str(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = contexts.get();
        let smtp = &ctx.config.smtp;
        let slot = match shared.clone().acquire(
            addr.ip(),
            smtp.max_connections,
            smtp.max_connections_per_ip,
        ) {
            Ok(slot) => slot,
            Err(refusal) => {
                info!(listener = %kind.as_str(), peer = %addr, "connection refused: {}", refusal.text);
                tracker.spawn(refuse(stream, refusal));
                continue;
            }
        };
        if kind == ListenerKind::Inbound
            && let Err(scope) = ctx.rates.check(Counted::Connection, addr.ip())
        {
            info!(listener = %kind.as_str(), peer = %addr, ?scope, "connection rate exceeded");
            ctx.metrics
                .smtp_policy(scope.label(Counted::Connection), "tempfail");
            tracker.spawn(refuse(stream, reply::CONNECTION_RATE));
            drop(slot);
            continue;
        }
        let span = info_span!("session", session_id = %session_id(), peer = %addr, listener = %kind.as_str());
        let session = Session::new(ctx.clone(), shared.clone(), kind, peer(addr));
        let metrics = ctx.metrics.clone();
        // Boxed: the session's state machine is kilobytes, and tokio moves a task's
        // future by value when it spawns it and again when it finishes it (issue 13).
        tracker.spawn(Box::pin(
            async move {
                metrics.session_opened(kind.as_str());
                debug!("connected");
                session.handle(stream).await;
                metrics.session_closed(kind.as_str());
                drop(slot);
            }
            .instrument(span),
        ));
    }
    info!(listener = %kind.as_str(), "stopped accepting");
}

fn peer(addr: SocketAddr) -> Peer {
    Peer {
        addr,
        helo: None,
        tls: false,
        user: None,
    }
}

fn session_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Says why and closes, without waiting long for a client that does not read.
async fn refuse(mut stream: TcpStream, refusal: Reply) {
    let write = async {
        stream.write_all(refusal.to_wire().as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

/// State the sessions of one listener share: open connections and AUTH failures per IP.
#[derive(Debug, Default)]
pub struct Shared {
    connections: Mutex<Connections>,
    auth_failures: Mutex<HashMap<IpAddr, (usize, Instant)>>,
}

#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection; dropping it frees the slot.
pub struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Shared {
    /// Takes a connection slot, or the 421 to send.
    pub fn acquire(
        self: Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Reply> {
        {
            let mut c = self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if c.total >= max_total {
                return Err(reply::TOO_MANY_CONNECTIONS);
            }
            if c.per_ip.get(&ip).copied().unwrap_or(0) >= max_per_ip {
                return Err(reply::TOO_MANY_CONNECTIONS_FROM_IP);
            }
            *c.per_ip.entry(ip).or_insert(0) += 1;
            c.total += 1;
        }
        Ok(Slot { shared: self, ip })
    }

    /// Records a failed AUTH; returns the failures counted for `ip`.
    pub fn auth_failed(&self, ip: IpAddr) -> usize {
        let mut map = self
            .auth_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= AUTH_FAILURE_ENTRIES {
            map.retain(|_, (_, last)| now.duration_since(*last) < AUTH_FAILURE_WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= AUTH_FAILURE_WINDOW {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }

    /// True when `ip` has used up its `max` failures within the window.
    pub fn auth_blocked(&self, ip: IpAddr, max: usize) -> bool {
        let map = self
            .auth_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&ip)
            .is_some_and(|(n, last)| *n >= max && last.elapsed() < AUTH_FAILURE_WINDOW)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_in_total_and_per_ip_and_freed_on_drop() {
        let shared = Arc::new(Shared::default());
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let s1 = shared.clone().acquire(a, 3, 2).expect("first");
        let _s2 = shared.clone().acquire(a, 3, 2).expect("second");
        assert_eq!(
            shared.clone().acquire(a, 3, 2).err(),
            Some(reply::TOO_MANY_CONNECTIONS_FROM_IP)
        );
        let _s3 = shared.clone().acquire(b, 3, 2).expect("other ip");
        assert_eq!(
            shared.clone().acquire(b, 3, 2).err(),
            Some(reply::TOO_MANY_CONNECTIONS)
        );
        drop(s1);
        assert!(shared.clone().acquire(a, 3, 2).is_ok());
    }

    #[test]
    fn auth_failures_block_after_the_limit() {
        let shared = Shared::default();
        let ip: IpAddr = [192, 0, 2, 9].into();
        assert!(!shared.auth_blocked(ip, 2));
        assert_eq!(shared.auth_failed(ip), 1);
        assert!(!shared.auth_blocked(ip, 2));
        assert_eq!(shared.auth_failed(ip), 2);
        assert!(shared.auth_blocked(ip, 2));
        assert!(!shared.auth_blocked([192, 0, 2, 10].into(), 2));
    }
}
