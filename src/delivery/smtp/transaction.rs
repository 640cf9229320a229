//! One transaction on an open [`Conn`] — MAIL, RCPT (pipelined when offered, RFC 2920),
//! DATA — and the one mapping of mail-send errors and negative replies to [`SmtpError`].
//!
//! The mapping lives here, beside the transaction, because `in_transaction` is what
//! [`SmtpError::is_permanent`] and the pool's reuse decision turn on: a 5xx to MAIL, RCPT
//! or DATA refuses the recipient; the same code to the greeting or EHLO refuses the host.

use smtp_proto::Response;

use super::open::Conn;
use super::{Envelope, Hop, SmtpError};

pub(super) async fn transaction(
    conn: &mut Conn,
    hop: &Hop,
    env: &Envelope<'_>,
) -> Result<String, SmtpError> {
    let host = hop.host.as_str();
    let mail = format!("MAIL FROM:<{}>\r\n", env.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", env.to);
    let client = &mut conn.client;
    let replies = if conn.pipelining {
        client
            .cmds([mail.as_bytes(), rcpt.as_bytes()])
            .await
            .map_err(|e| mail_err(host, e, true))?
    } else {
        let m = client
            .cmd(mail.as_bytes())
            .await
            .map_err(|e| mail_err(host, e, true))?;
        if !m.is_positive_completion() {
            return Err(reply_err(host, &m, true));
        }
        let r = client
            .cmd(rcpt.as_bytes())
            .await
            .map_err(|e| mail_err(host, e, true))?;
        vec![m, r]
    };
    if let Some(bad) = replies.iter().find(|r| !r.is_positive_completion()) {
        return Err(reply_err(host, bad, true));
    }
    let done = client
        .data(env.body)
        .await
        .map_err(|e| mail_err(host, e, true))?;
    Ok(reply_line(&done))
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
