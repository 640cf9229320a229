//! RCPT TO (RFC 5321 §4.1.1.3): each recipient is routed now, so the client learns at once
//! which addresses we take. Outside the alias domains it is relaying: `550 5.7.1`, unless
//! the client is an authenticated submission user or in `relay.trusted_networks` — then the
//! recipient goes to the outbound relay ([`Destination::Relay`]). Over a queue limit or
//! short of disk, every recipient gets `452 4.3.1` until there is room.

use tracing::info;

use super::command::RcptTo;
use super::rates::Counted;
use super::{Session, State};
use crate::envelope::esmtp::{Notify, RcptParams};
use crate::envelope::{Destination, ListenerKind};
use crate::reply::{self, Reply};
use crate::routing;

pub(super) fn rcpt(s: &mut Session, r: RcptTo) -> Reply {
    let may_relay =
        s.kind != ListenerKind::Inbound && (s.peer.user.is_some() || s.peer_is_trusted());
    let metrics = &s.ctx.metrics;
    let txn = match &mut s.state {
        State::Connected => return reply::NEED_EHLO,
        State::Greeted => return reply::NEED_MAIL,
        State::Mail(txn) if txn.chunks.is_some() => return reply::BAD_SEQUENCE,
        State::Mail(txn) => txn,
    };
    if s.kind == ListenerKind::Inbound
        && let Err(scope) = s.ctx.rates.check(Counted::Recipient, s.peer.addr.ip())
    {
        info!(rcpt = %r.to, ?scope, "recipient rate exceeded");
        metrics.smtp_policy(scope.label(Counted::Recipient), "tempfail");
        metrics.inbound_recipient("tempfail", "rate_limit");
        return reply::RECIPIENT_RATE;
    }
    if txn.recipients.len() >= s.ctx.config.smtp.max_recipients {
        metrics.inbound_recipient("rejected", "too_many");
        return reply::TOO_MANY_RECIPIENTS;
    }
    // Again at RCPT: the queue may have filled since MAIL (a long session, a burst).
    if let Err(full) = s.ctx.queue.admit() {
        info!(rcpt = %r.to, reason = %full, "queue full: recipient deferred");
        metrics.inbound_recipient("tempfail", "storage");
        return full.reply();
    }
    if !txn.mail.smtputf8 && !r.to.to_string().is_ascii() {
        metrics.inbound_recipient("rejected", "smtputf8");
        return reply::SMTPUTF8_REQUIRED;
    }
    if let Some(address) = unsubscribe_alias(&s.ctx, &r.to) {
        // `unsubscribe+TOKEN@<bounce domain>` (the mailto of our List-Unsubscribe): the
        // address goes on the suppression list now; the message itself is kept only for
        // the bounce stage, which drops it as no bounce.
        info!(rcpt = %address, "unsubscribe by mail");
        let list = s.ctx.suppressions.clone();
        drop(tokio::task::spawn_blocking(move || {
            let r = list.add_blocking(
                &address,
                "unsubscribe",
                crate::suppression::Source::Unsubscribe,
                Some("mail to the unsubscribe alias"),
            );
            if let Err(e) = r {
                tracing::warn!(rcpt = %address, error = %e, "cannot record an unsubscribe");
            }
        }));
        metrics.inbound_recipient("accepted", "unsubscribe");
        txn.rcpt_params.push(params(&r));
        txn.recipients.push((
            r.to,
            Destination::Bounce {
                token: String::new(),
            },
        ));
        return reply::RECIPIENT_OK;
    }
    let resolved = match s.ctx.router.resolve(&r.to) {
        Err(routing::Error::RelayDenied) if may_relay => Ok(Destination::Relay),
        other => other,
    };
    match resolved {
        Ok(Destination::Relay) if s.ctx.suppressions.is_suppressed(&r.to.to_string()) => {
            metrics.inbound_recipient("rejected", "suppressed");
            reply::RECIPIENT_SUPPRESSED
        }
        Ok(dest) => {
            metrics.inbound_recipient("accepted", "ok");
            let key = r.to.to_ascii_lowercase();
            // A repeated RCPT is acknowledged but delivered once.
            if !txn
                .recipients
                .iter()
                .any(|(a, _)| a.to_ascii_lowercase() == key)
            {
                txn.rcpt_params.push(params(&r));
                txn.recipients.push((r.to, dest));
            }
            reply::RECIPIENT_OK
        }
        Err(e) => {
            info!(rcpt = %r.to, error = %e, "recipient refused");
            metrics.inbound_recipient("rejected", label(&e));
            e.reply()
        }
    }
}

/// NOTIFY and ORCPT as the queue keeps them (the parser checked their syntax).
fn params(r: &RcptTo) -> RcptParams {
    RcptParams {
        notify: r.notify.as_deref().and_then(Notify::parse),
        orcpt: r.orcpt.clone(),
    }
}

/// The address an `unsubscribe+TOKEN@<bounce domain>` recipient unsubscribes, when TOKEN is ours.
fn unsubscribe_alias(ctx: &super::SessionContext, to: &crate::envelope::Address) -> Option<String> {
    if !to.domain.eq_ignore_ascii_case(ctx.config.bounce_domain()) {
        return None;
    }
    let (base, token) = to.local.split_once('+')?;
    if !base.eq_ignore_ascii_case("unsubscribe") {
        return None;
    }
    ctx.token_key.verify_unsubscribe(token)
}

fn label(e: &routing::Error) -> &'static str {
    match e {
        routing::Error::RelayDenied => "relay_denied",
        routing::Error::UnknownUser => "unknown_user",
        routing::Error::Rejected(_) => "route_rejected",
        routing::Error::NoForwardTargets => "no_forward_targets",
    }
}
