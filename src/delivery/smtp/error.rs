//! [`SmtpError`], where an outbound session or transaction failed, and the one mapping of
//! mail-send errors and negative replies to it.
//!
//! `in_transaction` is what [`SmtpError::is_permanent`] and the pool's reuse decision turn
//! on: a 5xx to MAIL, RCPT or DATA refuses the recipient; the same code to the greeting or
//! EHLO refuses the host. Its own module because both [`open`](super::open) (greeting,
//! EHLO, STARTTLS, AUTH) and [`transaction`](super::transaction) map errors, and neither
//! may import the other.

use std::net::IpAddr;

use smtp_proto::Response;

/// Where a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// TCP connect, DNS of a smart host name, timeouts, a dropped connection.
    #[error("{host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("{host}: TLS failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: authentication failed: {reason}")]
    Auth { host: String, reason: String },
    /// No OAuth2 access token for AUTH XOAUTH2: the token endpoint failed (transient:
    /// the next smart host is tried, then the recipient is deferred).
    #[error("{host}: no OAuth2 access token: {reason}")]
    Token { host: String, reason: String },
    /// The source IP could not be bound (not an address of this host) or the host has no
    /// address of its family.
    #[error("{host}: cannot connect from source IP {ip}: {reason}")]
    Bind {
        host: String,
        ip: IpAddr,
        reason: String,
        /// The host lacks the address (`EADDRNOTAVAIL`): a pool's next IP may take over.
        missing: bool,
    },
    /// The message needs what the hop does not offer (SMTPUTF8 for a non-ASCII address,
    /// 8BITMIME for 8-bit content); `reply` is mxgate's own permanent refusal. Nothing was
    /// sent.
    #[error("{reply} ({host})")]
    Unsupported { host: String, reply: String },
    /// A REQUIRETLS message and this hop has no verified TLS or no REQUIRETLS; another
    /// hop may have them. Nothing was sent.
    #[error("{host}: REQUIRETLS: {reason}")]
    RequireTls { host: String, reason: String },
    /// A negative reply; `in_transaction` = to MAIL, RCPT or DATA (else greeting/EHLO).
    #[error("{reply}")]
    Reply {
        host: String,
        code: u16,
        reply: String,
        in_transaction: bool,
    },
}

impl SmtpError {
    /// A 5xx to MAIL, RCPT or DATA: this recipient is refused, trying elsewhere won't help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SmtpError::Reply {
                code: 500..=599,
                in_transaction: true,
                ..
            } | SmtpError::Unsupported { .. }
        )
    }

    /// Refused before MAIL (the session is still in sync and may be reused).
    pub fn before_mail(&self) -> bool {
        matches!(
            self,
            SmtpError::Unsupported { .. } | SmtpError::RequireTls { .. }
        )
    }
}

/// `250 2.0.0 Ok: queued as X` (the enhanced code only when the server sent one).
pub fn reply_line(r: &Response<String>) -> String {
    let msg = r.message.replace(['\r', '\n'], " ");
    if r.esc[0] == 0 {
        format!("{} {msg}", r.code)
    } else {
        format!("{} {}.{}.{} {msg}", r.code, r.esc[0], r.esc[1], r.esc[2])
    }
}

pub(super) fn reply_err(host: &str, r: &Response<String>, in_transaction: bool) -> SmtpError {
    SmtpError::Reply {
        host: host.to_string(),
        code: r.code,
        reply: reply_line(r),
        in_transaction,
    }
}

pub(super) fn mail_err(host: &str, e: mail_send::Error, in_transaction: bool) -> SmtpError {
    match e {
        mail_send::Error::UnexpectedReply(r) => reply_err(host, &r, in_transaction),
        mail_send::Error::Tls(e) => SmtpError::Tls {
            host: host.to_string(),
            reason: e.to_string(),
        },
        other => SmtpError::Connect {
            host: host.to_string(),
            reason: describe(&other),
        },
    }
}

pub(super) fn tls_err(host: &str, e: mail_send::Error) -> SmtpError {
    SmtpError::Tls {
        host: host.to_string(),
        reason: describe(&e),
    }
}

pub(super) fn describe(e: &mail_send::Error) -> String {
    match e {
        mail_send::Error::AuthenticationFailed(r) | mail_send::Error::UnexpectedReply(r) => {
            reply_line(r)
        }
        mail_send::Error::UnparseableReply => "connection closed or unparseable reply".into(),
        other => other.to_string(),
    }
}
