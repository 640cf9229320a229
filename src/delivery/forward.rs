//! The `forward` route (local lane): one copy of the message for all the route's `to`
//! addresses goes back into the queue, with an SRS envelope sender (so SPF survives at the
//! far end) and a Received line of ours (so a forwarding loop ends at `smtp.max_hops`).
//! The copy's recipients resolve like any relayed ones; their attempts take the relay lane.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Error, dsn};
use crate::clock::Clock;
use crate::config::Config;
use crate::envelope::{Address, ListenerKind, ReversePath};
use crate::queue::{NewMessage, Queue, QueuedMessage};
use crate::routing::Router;
use crate::routing::srs;
use crate::routing::token::TokenKey;

/// What forwarding needs; built per config in `server.rs`.
pub struct Forwarder {
    config: Arc<Config>,
    key: TokenKey,
    router: Arc<Router>,
    queue: Queue,
    clock: Clock,
}

impl Forwarder {
    pub fn new(
        config: Arc<Config>,
        key: TokenKey,
        router: Arc<Router>,
        queue: Queue,
        clock: Clock,
    ) -> Forwarder {
        Forwarder {
            config,
            key,
            router,
            queue,
            clock,
        }
    }

    /// Queues one copy for all of `to`, with an SRS envelope sender.
    pub async fn forward(
        &self,
        msg: &QueuedMessage,
        to: &[String],
        body: &[u8],
    ) -> Result<String, Error> {
        let hops = crate::message::received_count(body);
        if hops > self.config.smtp.max_hops {
            return Err(Error::Rejected(format!(
                "forwarding loop: {hops} Received headers"
            )));
        }
        let today = self.clock.now_ms() / 86_400_000;
        let sender = srs::forward(
            &self.key,
            &msg.mail_from,
            self.config.bounce_domain(),
            today,
        );
        let mut recipients = Vec::new();
        for t in to {
            let Some(addr) = Address::parse(t.trim()) else {
                continue;
            };
            match self.router.resolve_or_relay(&addr) {
                Ok(dest) => recipients.push((addr, dest)),
                Err(e) => tracing::info!(target = %t, error = %e, "forward target refused"),
            }
        }
        if recipients.is_empty() {
            return Err(Error::Rejected("no forward target accepts mail".into()));
        }
        let trace = format!(
            "Received: by {} (mxgate) with forward id {};\r\n\t{}\r\n",
            self.config.server.hostname,
            msg.id,
            dsn::rfc5322_date(SystemTime::now())
        );
        let mut copy = trace.into_bytes();
        copy.extend_from_slice(body);
        let new = NewMessage {
            listener: ListenerKind::Inbound,
            peer_ip: msg.peer_ip,
            helo: msg.helo.clone(),
            mail_from: reverse_path(&sender),
            recipients,
            body: copy,
        };
        let id = self.queue.enqueue(new).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot queue a forwarded copy");
            Error::ForwardQueue
        })?;
        Ok(format!("forwarded as {id}"))
    }
}

/// `local@domain` as a reverse path; SRS local parts may exceed what [`Address::parse`]
/// accepts (64 octets), so they are built directly.
fn reverse_path(sender: &str) -> ReversePath {
    if sender.is_empty() {
        return ReversePath::Null;
    }
    if let Some(a) = Address::parse(sender) {
        return ReversePath::Address(a);
    }
    match sender.rsplit_once('@') {
        Some((local, domain)) => ReversePath::Address(Address {
            local: local.to_string(),
            domain: domain.to_ascii_lowercase(),
        }),
        None => ReversePath::Null,
    }
}
