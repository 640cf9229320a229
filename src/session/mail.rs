//! MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction after the listener's sender policy.
//!
//! Inbound: any sender, including the null sender `<>` (bounces must get through).
//! Submission: AUTH first (or a `relay.trusted_networks` peer), and an authenticated user
//! may only use its enrolled sending domains (SPEC "Submission").
//! Every listener: over a queue limit or short of disk, `452 4.3.1` ([`Queue::admit`]).
//!
//! [`Queue::admit`]: crate::queue::Queue::admit

use tracing::{info, warn};

use super::command::{BodyType, MailFrom};
use super::rates::Counted;
use super::{Session, State, Transaction};
use crate::envelope::{ListenerKind, ReversePath};
use crate::events::{Event, Kind};
use crate::reply::{self, Reply};

pub(super) fn mail(s: &mut Session, m: MailFrom) -> Reply {
    match s.state {
        State::Connected => return reply::NEED_EHLO,
        State::Mail(_) => return reply::NESTED_MAIL,
        State::Greeted => {}
    }
    if !s.esmtp && (m.size.is_some() || m.smtputf8 || m.body != BodyType::SevenBit) {
        // Extensions were never offered to a HELO client (RFC 5321 §4.1.1.2).
        return reply::PARAM_NOT_IMPLEMENTED;
    }
    if m.requiretls && !(s.kind != ListenerKind::Inbound && s.peer.tls) {
        // Not offered (RFC 8689 §4: only on submission, only over TLS).
        info!("REQUIRETLS refused outside TLS or on the inbound listener");
        return reply::PARAM_NOT_IMPLEMENTED;
    }
    if s.kind != ListenerKind::Inbound
        && let Some(refusal) = submission_policy(s, &m.from)
    {
        return refusal;
    }
    if let Some(refusal) = rate_limit(s, &m.from) {
        return refusal;
    }
    if !m.smtputf8 && !m.from.to_string().is_ascii() {
        return reply::SMTPUTF8_REQUIRED;
    }
    if m.size
        .is_some_and(|size| size > s.ctx.config.smtp.max_message_bytes.0)
    {
        info!(size = m.size, "declared size over the limit");
        s.ctx.metrics.inbound_message("rejected", "too_big");
        return reply::MESSAGE_TOO_BIG_DECLARED;
    }
    // Last, so a sender refused for good hears that rather than "try later".
    if let Err(full) = s.ctx.queue.admit() {
        info!(reason = %full, "queue full: new mail deferred");
        s.ctx.metrics.inbound_message("tempfail", "storage");
        return full.reply();
    }
    s.state = State::Mail(Box::new(Transaction {
        mail: m,
        recipients: Vec::new(),
        rcpt_params: Vec::new(),
        chunks: None,
    }));
    reply::SENDER_OK
}

fn submission_policy(s: &Session, from: &ReversePath) -> Option<Reply> {
    match &s.peer.user {
        None if !s.peer_is_trusted() => return Some(reply::AUTH_REQUIRED),
        None => {}
        Some(user) => {
            let allowed = s
                .ctx
                .config
                .submission
                .users
                .iter()
                .find(|u| &u.name == user)
                .is_some_and(|u| match from {
                    ReversePath::Address(a) => {
                        u.domains.iter().any(|d| d.eq_ignore_ascii_case(&a.domain))
                    }
                    ReversePath::Null => false,
                });
            if !allowed {
                info!(user, from = %from, "sender outside the user's domains");
                return Some(reply::SENDER_NOT_ALLOWED);
            }
        }
    }
    // Also for trusted-network relays: a suspended domain sends nothing (issue 6 item 7).
    let suspension = match from {
        ReversePath::Address(a) => s.ctx.suspensions.get(&a.domain),
        _ => None,
    };
    match suspension {
        Some(susp) => {
            info!(from = %from, reason = %susp.reason, "sending domain suspended");
            s.ctx
                .metrics
                .inbound_message("rejected", "domain_suspended");
            Some(if susp.complaints > 0 {
                reply::SENDER_DOMAIN_SUSPENDED_COMPLAINTS
            } else {
                reply::SENDER_DOMAIN_SUSPENDED
            })
        }
        None => warming_tempfail(s, from),
    }
}

/// Issue 16 item 3: the client's message rate (inbound) or the login's hourly cap
/// (submission), `451 4.7.1`. A login over its cap also raises a `rate_limited` event,
/// once an hour: the ERP's operators learn of a stolen password from the first refusal.
fn rate_limit(s: &Session, from: &ReversePath) -> Option<Reply> {
    let metrics = &s.ctx.metrics;
    if s.kind == ListenerKind::Inbound {
        let scope = s
            .ctx
            .rates
            .check(Counted::Message, s.peer.addr.ip())
            .err()?;
        info!(?scope, "message rate exceeded");
        metrics.smtp_policy(scope.label(Counted::Message), "tempfail");
        metrics.inbound_message("tempfail", "rate_limit");
        return Some(reply::MESSAGE_RATE);
    }
    let user = s.peer.user.as_deref()?;
    let over = s.ctx.rates.check_user(user).err()?;
    warn!(user, cap = over.cap, from = %from, "login over its hourly message cap");
    metrics.smtp_policy("user_hourly", "tempfail");
    metrics.inbound_message("tempfail", "user_hourly_limit");
    if over.notify {
        s.ctx.events.emit(Event {
            id: 0,
            event: Kind::RateLimited,
            timestamp: String::new(),
            queue_id: String::new(),
            message_id: String::new(),
            sender: from.to_string(),
            recipient: String::new(),
            reply: format!(
                "{} (login {user}, max_messages_per_hour = {})",
                reply::USER_HOURLY_LIMIT,
                over.cap
            ),
            category: None,
            status: Some(reply::USER_HOURLY_LIMIT.status.to_string()),
            attempts: 0,
            direction: "outbound",
            feedback_type: None,
            provider: None,
        });
    }
    Some(reply::USER_HOURLY_LIMIT)
}

/// Tempfail mode (issue 6 §3): `451 4.7.1` once the sending domain's warming cap for today
/// is spent (without it, the mail is accepted and waits in the queue for the next day).
fn warming_tempfail(s: &Session, from: &ReversePath) -> Option<Reply> {
    let (ReversePath::Address(a), Some(w)) = (from, &s.ctx.warming) else {
        return None;
    };
    if !s.ctx.config.warming.tempfail || !w.day_spent(&a.domain) {
        return None;
    }
    info!(from = %from, "warming cap for today spent");
    s.ctx.metrics.inbound_message("tempfail", "warming_cap");
    Some(reply::WARMING_CAP)
}
