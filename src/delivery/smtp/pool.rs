//! The connection pool of [`Pool`]: idle sessions by pool key, and the per-destination
//! permits that bound concurrency. No network I/O starts here — connections come from
//! [`open`](super::open), transactions from [`transaction`](super::transaction); this module
//! only decides which connection is reused, kept or dropped.
//!
//! Keys: a session is reusable for the same label, host, TLS mode, AUTH user and source IP
//! ([`Hop::pool_key`]); concurrency is per destination and source IP ([`Hop::limit_key`]),
//! so a mass-mail stream never waits for, nor borrows, a transactional one.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::open::Conn;
use super::transaction::transaction;
use super::{Accepted, Envelope, Hop, Pool, SmtpError};

impl Hop {
    pub(super) fn pool_key(&self) -> String {
        let user = self.credentials.as_ref().map_or("", |c| c.user());
        // tls_verify too: a session opened without verifying may not carry REQUIRETLS mail.
        // A DANE-checked session is never reused for an unchecked hop, nor the other way;
        // nor one an enforced MTA-STS policy did not check for a hop that has one.
        let dane = self.dane.as_ref().map_or("", |p| p.as_label());
        let sts = self
            .tls_policy
            .as_ref()
            .filter(|p| p.enforce && self.dane.is_none())
            .map_or("", |p| p.label.as_str());
        format!(
            "{}|{}|{:?}{dane}|{sts}|{}|{user}|{}",
            self.label,
            self.host,
            self.tls,
            self.tls_verify,
            source_label(self.source)
        )
    }

    /// Concurrency key: the destination, per source IP.
    pub(super) fn limit_key(&self) -> String {
        format!("{}|{}", self.dest, source_label(self.source))
    }
}

fn source_label(source: Option<IpAddr>) -> String {
    source.map_or_else(|| "default".to_string(), |ip| ip.to_string())
}

impl Pool {
    pub(super) async fn permit(&self, dest: &str) -> OwnedSemaphorePermit {
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

    pub(super) fn take_idle(&self, key: &str) -> Option<Conn> {
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

    /// One transaction on `conn`; the connection goes back to the pool when still in sync.
    pub(super) async fn run(
        &self,
        key: String,
        mut conn: Conn,
        hop: &Hop,
        env: &Envelope<'_>,
    ) -> (Result<Accepted, SmtpError>, Option<IpAddr>) {
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
            Err(e) if e.before_mail() => self.put_idle(key, conn),
            Err(_) => {}
        }
        (result, local_ip)
    }
}
