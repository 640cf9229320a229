//! After DATA on the inbound listener, before enqueue: who sent it ([`auth`](crate::auth)),
//! and what the recipients' alias domains do about it.
//!
//! Input: the transaction and the message as received. Output: the message's new top —
//! `X-Mxgate-Auth` (the short verdict the ERP push carries) and our `Authentication-Results`
//! — plus the message with forged copies of both removed; or the refusal (DMARC `p=reject`
//! → 550 5.7.1, SPF `-all` where the domain asks → 550 5.7.23, DNS trouble → 451 4.7.5).
//!
//! Submission listeners, authenticated clients and relay-only transactions (trusted
//! networks) skip verification: the sender is known, and the mail is not for us.

use tracing::info;

use super::{Session, Transaction};
use crate::auth::{self, Policy};
use crate::envelope::{Destination, ListenerKind};
use crate::reply::Reply;

/// The header fields to put on top, and the message with forged results removed.
pub(super) struct Verified {
    pub fields: String,
    pub content: Vec<u8>,
    /// What was found, for the spam filter ([`scan`](super::scan)); `None` = not checked.
    pub verdict: Option<auth::AuthVerdict>,
}

pub(super) async fn authenticate(
    s: &Session,
    txn: &Transaction,
    content: Vec<u8>,
) -> Result<Verified, Reply> {
    // Mail only for the outbound relay (a trusted network using port 25) is not ours to
    // judge, and must not leave with our verdict fields on it.
    let local = txn
        .recipients
        .iter()
        .any(|(_, dest)| !matches!(dest, Destination::Relay));
    if s.kind != ListenerKind::Inbound || s.peer.user.is_some() || !local {
        return Ok(Verified {
            fields: String::new(),
            content,
            verdict: None,
        });
    }
    let host = s.ctx.config.server.hostname.as_str();
    let helo = s.peer.helo.as_deref().unwrap_or_default();
    let verdict = s
        .ctx
        .verifier
        .verify(s.peer.addr.ip(), helo, &txn.mail.from, &content)
        .await;
    // Only alias-domain recipients have a policy; relayed ones (trusted networks) do not.
    let domains = s.ctx.config.domains.iter().filter(|d| {
        txn.recipients.iter().any(|(rcpt, dest)| {
            !matches!(dest, Destination::Relay) && rcpt.domain.eq_ignore_ascii_case(&d.name)
        })
    });
    let metrics = &s.ctx.metrics;
    let policy = verdict.policy_for(domains);
    let quarantined = match policy {
        Policy::Accept => false,
        Policy::Quarantine => {
            info!(auth = %verdict.erp_header(true), "message quarantined (tagged)");
            true
        }
        Policy::Reject { reply, reason } => {
            info!(auth = %verdict.erp_header(false), reply = %reply, "message refused by sender authentication");
            metrics.inbound_message("rejected", reason);
            return Err(reply);
        }
        Policy::TempFail(reply) => {
            info!(auth = %verdict.erp_header(false), reply = %reply, "sender authentication temporarily failed");
            metrics.inbound_message("tempfail", "auth_temperror");
            return Err(reply);
        }
    };
    let mut fields = format!("X-Mxgate-Auth: {}\r\n", verdict.erp_header(quarantined));
    fields.push_str(&verdict.header(host, quarantined));
    Ok(Verified {
        fields,
        content: auth::strip_forged_results(content, host),
        verdict: Some(verdict),
    })
}
