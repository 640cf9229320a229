//! Every SMTP reply mxgate sends, as named constants. No other file holds a reply literal
//! (a unit test greps `src/` for that), so the catalogue can be checked against SPEC.

use std::borrow::Cow;

/// One SMTP reply: code, RFC 3463 enhanced status, text; `close` ends the session after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: &'static str,
    pub text: Cow<'static, str>,
    pub close: bool,
}

impl Reply {
    pub const fn new(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Borrowed(text),
            close: false,
        }
    }
    /// A 421: the server closes the connection after sending it (RFC 5321 §3.8).
    pub const fn closing(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Borrowed(text),
            close: true,
        }
    }
    /// Same code and status, other text (e.g. with the queue id or the route's message).
    pub fn with_text(&self, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            text: text.into(),
            ..self.clone()
        }
    }
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Wire form. Multi-line text (`\n`-separated) uses `code-` continuation lines.
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_wire(&mut out);
        // Only ASCII digits and separators are added to the UTF-8 text.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Reply::to_wire`] appended to `out`: a session queues seven replies per message,
    /// and formatting each into a new `String` cost four allocations (issue 13).
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            // Formatted straight into `out`: writing to a Vec cannot fail.
            let _ = write!(out, "{}", self.code);
            out.push(if lines.peek().is_none() { b' ' } else { b'-' });
            if !self.status.is_empty() {
                out.extend_from_slice(self.status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, self.text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, self.text)
        }
    }
}

// --- connection ---
/// Banner text is completed with the hostname by the session.
pub const GREETING: Reply = Reply::new(220, "", "ESMTP mxgate");
pub const CLOSING: Reply = Reply::closing(221, "2.0.0", "Bye");
pub const TOO_MANY_CONNECTIONS: Reply =
    Reply::closing(421, "4.7.0", "Too many connections, try again later");
pub const TOO_MANY_CONNECTIONS_FROM_IP: Reply = Reply::closing(
    421,
    "4.7.0",
    "Too many connections from your address, try again later",
);
pub const SHUTTING_DOWN: Reply =
    Reply::closing(421, "4.3.2", "Service shutting down, try again later");
pub const IDLE_TIMEOUT: Reply = Reply::closing(421, "4.4.2", "Idle timeout, closing connection");
pub const TOO_MANY_ERRORS: Reply =
    Reply::closing(421, "4.7.0", "Too many errors, closing connection");
/// Postscreen's pregreet test (`smtp.greet_delay`): the client spoke before our banner,
/// which RFC 5321 §3.1 clients never do; bots that blast commands blind do.
pub const PREGREET: Reply = Reply::closing(
    554,
    "5.5.1",
    "Protocol error: data sent before the greeting",
);
/// A `reject` DNSBL lists the client (SPEC "Replies"); the session fills in IP and zone:
/// `Service unavailable; client [IP] blocked using ZONE`, Postfix's words.
pub const DNSBL_BLOCKED: Reply = Reply::closing(554, "5.7.1", "Service unavailable;");
/// EHLO/HELO answer; the session puts the hostname first and the EHLO keywords after it
/// (RFC 2034 §3: EHLO lines carry no enhanced status code).
pub const HELLO: Reply = Reply::new(250, "", "Hello");

// --- generic command handling ---
pub const OK: Reply = Reply::new(250, "2.0.0", "OK");
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Sender OK");
pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5", "Recipient OK");
pub const RESET_OK: Reply = Reply::new(250, "2.0.0", "Reset OK");
pub const VRFY_CANNOT_VERIFY: Reply = Reply::new(
    252,
    "2.5.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const HELP: Reply = Reply::new(214, "2.0.0", "See RFC 5321; mxgate speaks ESMTP");
pub const SYNTAX_ERROR: Reply = Reply::new(500, "5.5.2", "Syntax error, command unrecognized");
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "Line too long");
pub const PARAM_SYNTAX: Reply = Reply::new(501, "5.5.4", "Syntax error in parameters or arguments");
pub const BAD_ADDRESS_SYNTAX: Reply = Reply::new(501, "5.1.3", "Bad address syntax");
pub const BAD_SENDER_SYNTAX: Reply = Reply::new(501, "5.1.7", "Bad sender address syntax");
pub const NOT_IMPLEMENTED: Reply = Reply::new(502, "5.5.1", "Command not implemented");
pub const PARAM_NOT_IMPLEMENTED: Reply = Reply::new(
    555,
    "5.5.4",
    "MAIL FROM/RCPT TO parameters not recognized or not implemented",
);
pub const BAD_SEQUENCE: Reply = Reply::new(503, "5.5.1", "Bad sequence of commands");
pub const NEED_EHLO: Reply = Reply::new(503, "5.5.1", "Send HELO/EHLO first");
pub const NEED_MAIL: Reply = Reply::new(503, "5.5.1", "Need MAIL command first");
pub const NEED_RCPT: Reply = Reply::new(503, "5.5.1", "Need RCPT command first");
pub const NESTED_MAIL: Reply = Reply::new(503, "5.5.1", "Sender already specified");
pub const BAD_HELO: Reply = Reply::new(
    501,
    "5.5.4",
    "HELO/EHLO requires a domain or address literal",
);

// --- STARTTLS ---
pub const READY_TO_START_TLS: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");
pub const TLS_ALREADY_ACTIVE: Reply = Reply::new(503, "5.5.1", "TLS already active");
pub const TLS_NOT_AVAILABLE: Reply =
    Reply::new(454, "4.7.0", "TLS not available due to temporary reason");

// --- AUTH (submission) ---
pub const AUTH_OK: Reply = Reply::new(235, "2.7.0", "Authentication successful");
pub const MUST_STARTTLS: Reply = Reply::new(530, "5.7.0", "Must issue a STARTTLS command first");
pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0", "Authentication required");
pub const AUTH_INVALID: Reply = Reply::new(535, "5.7.8", "Authentication credentials invalid");
pub const AUTH_ALREADY: Reply = Reply::new(503, "5.5.1", "Already authenticated");
pub const AUTH_MECHANISM: Reply = Reply::new(504, "5.5.4", "Unrecognized authentication type");
pub const AUTH_CANCELLED: Reply = Reply::new(501, "5.0.0", "Authentication cancelled");
pub const AUTH_TOO_MANY_FAILURES: Reply = Reply::closing(
    421,
    "4.7.0",
    "Too many authentication failures, try again later",
);
/// RFC 4954 §4 server challenges: empty for PLAIN, base64 prompts for LOGIN.
pub const AUTH_CONTINUE: Reply = Reply::new(334, "", "");
pub const AUTH_LOGIN_USERNAME: Reply = Reply::new(334, "", "VXNlcm5hbWU6");
pub const AUTH_LOGIN_PASSWORD: Reply = Reply::new(334, "", "UGFzc3dvcmQ6");
pub const AUTH_NOT_ON_LISTENER: Reply = Reply::new(502, "5.5.1", "AUTH not available on this port");

// --- MAIL / RCPT ---
pub const SENDER_NOT_ALLOWED: Reply = Reply::new(550, "5.1.0", "From address not allowed");
pub const MESSAGE_TOO_BIG_DECLARED: Reply = Reply::new(
    552,
    "5.3.4",
    "Message size exceeds fixed maximum message size",
);
pub const RELAY_DENIED: Reply = Reply::new(550, "5.7.1", "Relaying denied");
pub const UNKNOWN_USER: Reply = Reply::new(550, "5.1.1", "User unknown");
pub const RECIPIENT_REJECTED: Reply = Reply::new(550, "5.7.1", "Recipient rejected");
pub const RECIPIENT_SUPPRESSED: Reply = Reply::new(550, "5.7.1", "Recipient suppressed");
/// The sending domain is suspended for its permanent bounce rate until an operator lifts it
/// (SPEC "Replies"; issue 6 item 7).
pub const SENDER_DOMAIN_SUSPENDED: Reply = Reply::new(
    550,
    "5.7.1",
    "Sending domain suspended for bounce rate, contact the operator",
);
/// The same for its spam complaint rate (issue 17 item 7).
pub const SENDER_DOMAIN_SUSPENDED_COMPLAINTS: Reply = Reply::new(
    550,
    "5.7.1",
    "Sending domain suspended for complaint rate, contact the operator",
);
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Too many recipients");
/// A `forward` route with an empty `to` list: nowhere to send the mail.
pub const FORWARD_NO_TARGETS: Reply = Reply::new(550, "5.1.1", "Mailbox has no forwarding address");
/// `[submission] from_alignment = "reject"`: header From outside the user's domains.
pub const HEADER_FROM_NOT_ALLOWED: Reply = Reply::new(550, "5.7.1", "Header From not allowed");
pub const SMTPUTF8_REQUIRED: Reply = Reply::new(
    553,
    "5.6.7",
    "Non-ASCII address requires the SMTPUTF8 parameter",
);

// --- DATA / BDAT ---
pub const START_DATA: Reply = Reply::new(354, "", "Start mail input; end with <CRLF>.<CRLF>");
/// Text is completed with the queue id by the session.
pub const QUEUED: Reply = Reply::new(250, "2.0.0", "OK queued as");
pub const BDAT_CHUNK_OK: Reply = Reply::new(250, "2.0.0", "Chunk accepted");
pub const MESSAGE_TOO_BIG: Reply = Reply::new(
    552,
    "5.3.4",
    "Message size exceeds fixed maximum message size",
);
pub const BARE_LF: Reply = Reply::new(
    550,
    "5.6.11",
    "Bare LF or bare CR in message data; lines must end with CRLF (RFC 5321 §2.3.8)",
);
pub const MAIL_LOOP: Reply = Reply::new(554, "5.4.6", "Too many hops, mail loop detected");
pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "No valid recipients");
/// RFC 3030 §3: BODY=BINARYMIME content can only be sent with BDAT.
pub const BINARYMIME_NEEDS_BDAT: Reply = Reply::new(503, "5.5.1", "BODY=BINARYMIME requires BDAT");
pub const DATA_AFTER_BDAT: Reply = Reply::new(503, "5.5.1", "DATA not allowed after BDAT");
pub const DATA_TIMEOUT: Reply =
    Reply::closing(421, "4.4.2", "Timeout while receiving message data");
pub const STORE_UNAVAILABLE: Reply = Reply::new(
    451,
    "4.4.2",
    "Queue temporarily unavailable, try again later",
);
/// The queue is over `queue.max_messages` / `max_bytes`, or the data filesystem under
/// `queue.min_free_disk` (SPEC "Names fixed on 2026-12-05"): given at MAIL and RCPT on
/// every listener, so the client keeps the message and retries; RFC 5321 §4.2.3 452,
/// RFC 3463 X.3.1 "mail system full". Store trouble while saving is [`STORE_UNAVAILABLE`].
pub const INSUFFICIENT_STORAGE: Reply = Reply::new(452, "4.3.1", "Insufficient system storage");
pub const LOCAL_ERROR: Reply =
    Reply::new(451, "4.3.0", "Local error in processing, try again later");
pub const BAD_MESSAGE_HEADER: Reply = Reply::new(554, "5.6.0", "Message header is malformed");

// --- authentication verdicts (inbound) ---
pub const DMARC_REJECT: Reply = Reply::new(550, "5.7.1", "Rejected by DMARC policy");
pub const SPF_FAIL: Reply = Reply::new(550, "5.7.23", "SPF validation failed");
pub const AUTH_TEMPFAIL: Reply = Reply::new(451, "4.7.5", "Temporary failure verifying sender");

// --- outbound relay: what mxgate itself records as a recipient's final reply ---
/// RFC 7505 §4.2: the recipient domain publishes a null MX.
pub const NULL_MX: Reply = Reply::new(
    556,
    "5.1.10",
    "Recipient domain does not accept mail (null MX)",
);
/// The recipient domain has no MX and no A/AAAA record.
pub const NO_SUCH_DOMAIN: Reply = Reply::new(550, "5.1.2", "Recipient domain has no mail server");
/// No smart host takes this sender and `relay.direct_mx` is off.
pub const NO_RELAY_ROUTE: Reply = Reply::new(451, "4.4.0", "No relay route for this sender");
/// Expired in the queue (RFC 3463 4.4.7), the status of the DSN sent then.
pub const DELIVERY_EXPIRED: Reply =
    Reply::new(451, "4.4.7", "Delivery time expired, message returned");
/// RFC 6531 §3.5: a non-ASCII envelope address, and the next hop does not offer SMTPUTF8.
pub const SMTPUTF8_NOT_OFFERED: Reply = Reply::new(
    553,
    "5.6.7",
    "Non-ASCII address and the next hop does not offer SMTPUTF8",
);
/// RFC 6152 §3: 8-bit content and the next hop lacks 8BITMIME. Not converted to 7 bit:
/// that would break the DKIM signature made at submission.
pub const EIGHTBIT_NOT_OFFERED: Reply = Reply::new(
    554,
    "5.6.3",
    "8-bit message and the next hop does not offer 8BITMIME (not converted, to keep its DKIM signature)",
);
/// RFC 8689 §5: a REQUIRETLS message and no hop with verified TLS and REQUIRETLS.
pub const REQUIRETLS_NOT_MET: Reply = Reply::new(550, "5.7.30", "REQUIRETLS support required");
/// A forwarded copy could not be queued.
pub const FORWARD_QUEUE_FAILED: Reply = Reply::new(451, "4.3.0", "Forwarded copy not queued");

// --- per-client rates (issue 16 item 3; Postfix anvil) ---
pub const CONNECTION_RATE: Reply = Reply::closing(
    421,
    "4.7.0",
    "Connection rate limit exceeded, try again later",
);
pub const MESSAGE_RATE: Reply =
    Reply::new(451, "4.7.1", "Message rate limit exceeded, try again later");
pub const RECIPIENT_RATE: Reply = Reply::new(
    451,
    "4.7.1",
    "Recipient rate limit exceeded, try again later",
);
/// `[[submission.users]] max_messages_per_hour` reached by the authenticated login.
pub const USER_HOURLY_LIMIT: Reply = Reply::new(
    451,
    "4.7.1",
    "Hourly message limit of this login reached, try again later",
);

// --- submission policy ---
pub const WARMING_CAP: Reply = Reply::new(451, "4.7.1", "Warming tier rate limit");
pub const DOMAIN_SUSPENDED: Reply =
    Reply::new(550, "5.7.1", "Sending domain suspended for bounce rate");

// Spam filter (rspamd, inbound). A reject carries rspamd's own message when it gives one.
pub const SPAM_REJECTED: Reply = Reply::new(550, "5.7.1", "Message rejected as spam");
pub const SPAM_DEFERRED: Reply = Reply::new(451, "4.7.1", "Try again later");
pub const SPAM_FILTER_UNAVAILABLE: Reply =
    Reply::new(451, "4.7.1", "Spam filter unavailable, try again later");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fixed_replies_read_exactly_so() {
        assert_eq!(RELAY_DENIED.to_string(), "550 5.7.1 Relaying denied");
        assert_eq!(
            MUST_STARTTLS.to_string(),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        assert_eq!(
            AUTH_INVALID.to_string(),
            "535 5.7.8 Authentication credentials invalid"
        );
        assert_eq!(
            SENDER_NOT_ALLOWED.to_string(),
            "550 5.1.0 From address not allowed"
        );
        assert_eq!(
            RECIPIENT_SUPPRESSED.to_string(),
            "550 5.7.1 Recipient suppressed"
        );
        assert_eq!(WARMING_CAP.to_string(), "451 4.7.1 Warming tier rate limit");
        assert_eq!(
            INSUFFICIENT_STORAGE.to_string(),
            "452 4.3.1 Insufficient system storage"
        );
        assert_eq!(STORE_UNAVAILABLE.code, 451);
        assert_eq!(STORE_UNAVAILABLE.status, "4.4.2");
        assert_eq!(MESSAGE_TOO_BIG.code, 552);
        assert_eq!(MESSAGE_TOO_BIG.status, "5.3.4");
        assert_eq!(MAIL_LOOP.status, "5.4.6");
        assert_eq!(UNKNOWN_USER.to_string(), "550 5.1.1 User unknown");
    }

    #[test]
    fn multiline_replies_use_continuation() {
        let r = OK.with_text("a\nb");
        assert_eq!(r.to_wire(), "250-2.0.0 a\r\n250 2.0.0 b\r\n");
        let mut queued = b"220 x\r\n".to_vec();
        r.write_wire(&mut queued);
        assert_eq!(queued, b"220 x\r\n250-2.0.0 a\r\n250 2.0.0 b\r\n");
        let mut bare = Vec::new();
        Reply::new(354, "", "go").write_wire(&mut bare);
        assert_eq!(bare, b"354 go\r\n");
        assert_eq!(
            START_DATA.to_wire(),
            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        );
    }

    #[test]
    fn status_code_class_matches_reply_class() {
        // A unit test in reply_literals.rs (tests/) greps src/ for stray literals.
        for r in [
            &RELAY_DENIED,
            &TOO_MANY_RECIPIENTS,
            &QUEUED,
            &AUTH_OK,
            &SHUTTING_DOWN,
        ] {
            assert_eq!(r.status.as_bytes()[0], r.code.to_string().as_bytes()[0]);
        }
    }
}
