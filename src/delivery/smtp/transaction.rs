//! One transaction on an open [`Conn`] — MAIL, RCPT (pipelined when offered, RFC 2920),
//! DATA. Errors are mapped with `in_transaction = true` ([`super::error`]): a 5xx here
//! refuses the recipient, where the same code to the greeting or EHLO refuses the host.

use super::error::{SmtpError, mail_err, reply_err, reply_line};
use super::open::Conn;
use super::{Envelope, Hop};

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
