//! Messages and credentials the tests send, built in one place: the ERP's outbound mail,
//! DSNs and ARF reports arriving from remote MTAs, and the AUTH PLAIN response.

use base64::Engine as _;

/// The AUTH PLAIN initial response for `user` / `password` (RFC 4616).
pub fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// What the ERP relays: `Shop <from>` to `to`, with a Message-ID from `subject` and a
/// Date, body `Hello <to>`.
pub fn raw(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: Shop <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@erp.test>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\nHello {to}\r\n"
    )
}

/// A bare ERP message (no Date: submission adds one), with the `X-Mxgate-Stream` header
/// when `stream` is given.
pub fn erp_mail(from: &str, to: &str, subject: &str, stream: Option<&str>) -> String {
    let stream = stream.map_or(String::new(), |s| format!("X-Mxgate-Stream: {s}\r\n"));
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{stream}Message-ID: <{subject}@erp.test>\r\n\r\nHello\r\n"
    )
}

/// An RFC 3464 report from `mta` (as `MAILER-DAEMON@mta`, to `bounce@example.test`) that
/// `rcpt` failed with `status` and the SMTP `diagnostic`.
pub fn dsn(mta: &str, rcpt: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "From: MAILER-DAEMON@{mta}\r\n\
To: bounce@example.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; {mta}\r\n\
\r\n\
Final-Recipient: rfc822; {rcpt}\r\n\
Action: failed\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp; {diagnostic}\r\n\
--b1--\r\n"
    )
}

/// [`dsn`] from `mta`: `rcpt` is unknown there (550 5.1.1).
pub fn dsn_user_unknown(mta: &str, rcpt: &str) -> String {
    let diagnostic = format!("550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown");
    dsn(mta, rcpt, "5.1.1", &diagnostic)
}

/// A Yahoo feedback-loop report (RFC 5965 ARF, abuse) about the message `rcpt` got with
/// `return_path` and `message_id`; the original comes back as its header section.
pub fn arf(rcpt: &str, return_path: &str, message_id: &str) -> String {
    format!(
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\r\nTo: bounce@example.test\r\nSubject: FW: Invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"ARF\"\r\n\r\n--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report for an email message received from IP 127.0.0.1.\r\n\r\n--ARF\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 1\r\nOriginal-Mail-From: <{return_path}>\r\nOriginal-Rcpt-To: <{rcpt}>\r\nSource-IP: 127.0.0.1\r\n\r\n--ARF\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <{return_path}>\r\nFrom: news@shop.test\r\nTo: {rcpt}\r\nSubject: Invoice\r\nMessage-ID: <{message_id}>\r\n\r\n--ARF--\r\n"
    )
}
