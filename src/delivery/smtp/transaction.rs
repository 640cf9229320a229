//! One transaction on an open [`Conn`] — MAIL, RCPT (pipelined when offered, RFC 2920),
//! DATA (or BDAT for BINARYMIME), with the ESMTP parameters the hop takes ([`params`]).
//! Errors are mapped with `in_transaction = true` ([`super::error`]): a 5xx here refuses the
//! recipient, where the same code to the greeting or EHLO refuses the host.

use super::error::{SmtpError, mail_err, reply_err, reply_line};
use super::open::Conn;
use super::params::{self, Refusal};
use super::{Accepted, Envelope, Hop};
use crate::reply;

pub(super) async fn transaction(
    conn: &mut Conn,
    hop: &Hop,
    env: &Envelope<'_>,
) -> Result<Accepted, SmtpError> {
    let host = hop.host.as_str();
    let wire =
        params::negotiate(env, conn.caps, conn.verified_tls).map_err(|r| refused(host, r))?;
    let mail = format!("MAIL FROM:<{}>{}\r\n", env.from, wire.mail);
    let rcpt = format!("RCPT TO:<{}>{}\r\n", env.to, wire.rcpt);
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
    let done = if wire.bdat {
        client.bdat(env.body).await
    } else {
        client.data(env.body).await
    }
    .map_err(|e| mail_err(host, e, true))?;
    Ok(Accepted {
        reply: reply_line(&done),
    })
}

fn refused(host: &str, r: Refusal) -> SmtpError {
    let host = host.to_string();
    match r {
        Refusal::Smtputf8 => SmtpError::Unsupported {
            host,
            reply: reply::SMTPUTF8_NOT_OFFERED.to_string(),
        },
        Refusal::EightBit => SmtpError::Unsupported {
            host,
            reply: reply::EIGHTBIT_NOT_OFFERED.to_string(),
        },
        Refusal::RequireTls(reason) => SmtpError::RequireTls {
            host,
            reason: reason.to_string(),
        },
    }
}
