//! After sender authentication on the inbound listener, before enqueue: rspamd's verdict
//! ([`spam`](crate::spam)) under the recipients' domains' `spam` mode.
//!
//! Input: the transaction, the authentication verdict and the message. Output: the
//! `X-Spam-*` fields to put on top and the message as rspamd edited it; or the refusal
//! (550 5.7.1 / 451 4.7.1). Scanned like [`verify`](super::verify): inbound mail for the
//! alias domains only, never submissions, authenticated clients or relay-only mail.
//!
//! One message has one DATA reply, so recipients in several alias domains share one
//! decision: the strictest of their domains' modes (`enforce` > `tag` > `off`). A 550
//! for all of them bounces to the sender, which nobody misses silently.

use tracing::{info, warn};

use super::{Session, Transaction};
use crate::auth::AuthVerdict;
use crate::config::SpamMode;
use crate::envelope::{Destination, ListenerKind, QueueId};
use crate::reply::Reply;
use crate::spam::{self, Disposition, headers};

pub(super) async fn scan(
    s: &Session,
    txn: &Transaction,
    auth: Option<&AuthVerdict>,
    content: Vec<u8>,
    id: QueueId,
) -> Result<(String, Vec<u8>), Reply> {
    let Some(scanner) = s.ctx.spam.as_deref() else {
        return Ok((String::new(), content));
    };
    let mode = mode(s, txn);
    if s.kind != ListenerKind::Inbound || s.peer.user.is_some() || mode == SpamMode::Off {
        return Ok((String::new(), content));
    }
    let cfg = &s.ctx.config;
    let mail_from = txn.mail.from.to_string();
    let req = spam::Request {
        ip: s.peer.addr.ip(),
        helo: s.peer.helo.as_deref().unwrap_or_default(),
        mail_from: &mail_from,
        rcpts: txn.recipients.iter().map(|(r, _)| r.to_string()).collect(),
        queue_id: id.to_string(),
        mta_name: &cfg.server.hostname,
        auth,
    };
    let result = scanner.scan(&req, &content).await;
    match &result {
        Ok(v) => info!(queue_id = %id, action = v.action.as_rspamd(), score = v.score, "spam scan"),
        Err(e) => {
            warn!(queue_id = %id, error = %e, on_error = ?cfg.spam.on_error, "spam scan failed")
        }
    }
    let metrics = &s.ctx.metrics;
    match spam::decide(mode, cfg.spam.on_error, result) {
        Disposition::Refuse(reply) => {
            let (result, reason) = if reply.is_permanent() {
                ("rejected", "spam")
            } else if reply == crate::reply::SPAM_FILTER_UNAVAILABLE {
                ("tempfail", "spam_filter_unavailable")
            } else {
                ("tempfail", "spam")
            };
            info!(queue_id = %id, reply = %reply, "message refused by the spam filter");
            metrics.inbound_message(result, reason);
            Err(reply)
        }
        Disposition::Deliver { verdict } => Ok((
            headers::fields(verdict.as_ref()),
            headers::apply(content, verdict.as_ref()),
        )),
    }
}

/// The strictest `spam` mode among the alias domains of the recipients (relayed
/// recipients have none); `off` when there are none.
fn mode(s: &Session, txn: &Transaction) -> SpamMode {
    s.ctx
        .config
        .domains
        .iter()
        .filter(|d| {
            txn.recipients.iter().any(|(rcpt, dest)| {
                !matches!(dest, Destination::Relay) && rcpt.domain.eq_ignore_ascii_case(&d.name)
            })
        })
        .map(|d| d.spam)
        .max()
        .unwrap_or(SpamMode::Off)
}
