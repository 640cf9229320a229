//! Phrases about the message format, the SMTP conversation and the receiving system.

use crate::bounce::category::Reason;

/// Format, protocol, security, expiry, transport and system failures.
pub(super) const SYSTEM: &[(Reason, &[&str])] = &[
    (
        Reason::NotCompliantRfc,
        &[
            "not rfc 5322 compliant", "rfc 5322", "rfc5322", "rfcmessagenoncompliant",
            "duplicate header", "multiple addresses in from", "not rfc compliant",
            "non-compliant", "rfc 2822", "rfc2822", "header is not rfc",
            "multiple from", "more than one from",
        ],
    ),
    (
        Reason::ContentError,
        &[
            "8-bit data in message header", "improper use of 8-bit", "invalid mime",
            "mime complexity", "header size", "headers too large", "line too long",
            "improperly-formatted", "unnecessary base64", "message header",
            "content error", "invalid message content", "bare lf", "media error",
        ],
    ),
    (
        Reason::FailedStartTls,
        &["starttls is required", "must issue a starttls", "tls required", "requiretls"],
    ),
    (
        Reason::SecurityError,
        &[
            "authentication required", "authentication is required", "auth required",
            "must authenticate", "authentication failed", "not authenticated",
            "authentication turned on", "smtp auth", "relay requires authentication",
            "unauthenticated", "insecure", "not authorized", "user not authenticated",
            "please use the smtp server",
        ],
    ),
    (
        Reason::Expired,
        &[
            "retry timeout exceeded", "retry time not reached", "giving up",
            "queue too long", "too long in queue", "message expired", "delivery expired",
            "could not be delivered for more than", "could not deliver for the last",
            "failing for a long time", "message timed out", "timed out while",
            "has not been collected after", "within the allowed queue period",
            "after multiple retries", "has been delayed", "will continue to be made",
            "delivery time expired", "undeliverable for", "expired", "deferred for too long",
            "no longer retrying", "delayed", "will be retried", "will retry",
            "not yet been delivered", "couldn't be delivered in time", "time limit",
        ],
    ),
    (
        Reason::MailerError,
        &[
            "x-unix;", "command died with status", "command failed", "command output",
            "exit code", "pipe to |", "procmail", "mailer error", "unknown mailer",
            "local delivery failed", "maildrop", "delivery program", "error in pipe",
            "exited with", "killed by signal", "sieve",
        ],
    ),
    (
        Reason::SystemFull,
        &["mail system full", "system is full", "disk full", "filesystem full", "disk is full"],
    ),
    (
        Reason::NetworkError,
        &[
            "hop count exceeded", "too many hops", "mail loop", "loops back to myself",
            "routing loop", "forwarding loop", "host is unreachable",
            "host unreachable", "network is unreachable", "no route to host",
            "host not reachable", "connection timed out", "connection refused",
            "could not connect", "unable to connect", "lost connection",
            "name server", "dns error", "temporary dns", "lookup failed",
            "host name lookup failure", "try again later", "connection reset",
            "malformed or unexpected name server reply", "network error", "name service error",
        ],
    ),
    (
        Reason::SystemError,
        &[
            "system error", "internal error", "local error", "server error",
            "configuration error", "config error", "service unavailable",
            "service currently unavailable", "temporary failure", "temporary error",
            "temporarily unavailable", "try again", "processing error", "i/o error",
            "interrupted system call", "mail system configuration", "local problem",
            "server busy", "temporary local problem", "transaction failed",
        ],
    ),
    (
        Reason::SyntaxError,
        &[
            "syntax error", "command unrecognized", "unrecognized command",
            "bad sequence of commands", "command not implemented", "line too long",
            "invalid command", "command not recognized", "parameter not implemented",
            "malformed address", "incorrectly constructed",
        ],
    ),
];
