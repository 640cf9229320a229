//! MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction after the listener's sender policy.
//!
//! Inbound: any sender, including the null sender `<>` (bounces must get through).
//! Submission: AUTH first (or a `relay.trusted_networks` peer), and an authenticated user
//! may only use its enrolled sending domains (SPEC "Submission").

use tracing::info;

use super::command::{BodyType, MailFrom};
use super::reply::{self, Reply};
use super::{Session, State, Transaction};
use crate::envelope::{ListenerKind, ReversePath};

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
    if s.kind != ListenerKind::Inbound
        && let Some(refusal) = submission_policy(s, &m.from)
    {
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
    s.state = State::Mail(Box::new(Transaction {
        mail: m,
        recipients: Vec::new(),
        chunks: None,
    }));
    reply::SENDER_OK
}

fn submission_policy(s: &Session, from: &ReversePath) -> Option<Reply> {
    let Some(user) = &s.peer.user else {
        return (!s.peer_is_trusted()).then_some(reply::AUTH_REQUIRED);
    };
    let allowed = s
        .ctx
        .config
        .submission
        .users
        .iter()
        .find(|u| &u.name == user)
        .is_some_and(|u| match from {
            ReversePath::Address(a) => u.domains.iter().any(|d| d.eq_ignore_ascii_case(&a.domain)),
            ReversePath::Null => false,
        });
    if allowed {
        None
    } else {
        info!(user, from = %from, "sender outside the user's domains");
        Some(reply::SENDER_NOT_ALLOWED)
    }
}
