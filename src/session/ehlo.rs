//! EHLO / HELO (RFC 5321 §4.1.1.1): greet, reset any transaction, advertise extensions.

use super::{Session, State};
use crate::envelope::ListenerKind;
use crate::reply::{self, Reply};

/// `extended`: EHLO (with the keyword list) rather than HELO.
pub(super) fn ehlo(s: &mut Session, name: String, extended: bool) -> Reply {
    // A new EHLO is an implicit RSET (RFC 5321 §4.1.4); authentication survives it.
    s.state = State::Greeted;
    s.peer.helo = Some(name);
    s.esmtp = extended;
    let host = &s.ctx.config.server.hostname;
    if !extended {
        return reply::HELLO.with_text(host.clone());
    }
    let mut lines = vec![host.clone()];
    lines.extend(keywords(s).into_iter().map(String::from));
    lines.push(format!("SIZE {}", s.ctx.config.smtp.max_message_bytes.0));
    reply::HELLO.with_text(lines.join("\n"))
}

/// The EHLO keywords this session may use now (SIZE is added with its value).
fn keywords(s: &Session) -> Vec<&'static str> {
    let mut k = vec![
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
    ];
    if !s.peer.tls && s.ctx.tls.is_some() {
        k.push("STARTTLS");
    }
    if s.kind != ListenerKind::Inbound {
        // RFC 3461: NOTIFY/RET/ENVID/ORCPT are stored and honoured for relayed mail.
        k.push("DSN");
        // RFC 8689 §4: advertised only inside TLS, so a REQUIRETLS message never arrived
        // in clear.
        if s.peer.tls {
            k.push("REQUIRETLS");
        }
    }
    // RFC 4954 §4 + SPEC "Submission": AUTH only on submission ports, only over TLS.
    if s.kind != ListenerKind::Inbound && s.peer.tls && s.peer.user.is_none() {
        k.push("AUTH PLAIN LOGIN");
    }
    k
}
