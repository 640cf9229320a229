//! Classification: (reply code, enhanced status code, diagnostic text) → `Classification`.
//!
//! The same function serves DSNs received at `bounce+TOKEN@` and the replies mxgate's own
//! delivery attempts get, so synchronous and asynchronous bounces land in one table.
//! Order of evidence: a status code that can only mean one thing (5.7.26 DMARC, 5.7.25 PTR)
//! → the diagnostic phrase tables → the status code table → the bare reply code.

use serde::Serialize;

use super::category::{Category, DeliveryKind, Reason};
use super::codes;
use super::phrases;

/// The verdict on one failed recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub category: Category,
    pub reason: Reason,
    /// The address is dead (unknown user or host, moved, domain takes no mail).
    pub hard: bool,
    pub kind: DeliveryKind,
}

/// Classifies one SMTP reply or DSN diagnostic, e.g.
/// `classify_reply(Some(550), Some("5.1.1"), "<x@y>: Recipient address rejected: User unknown")`.
/// `status` may be `None`; then one is looked for in `text`.
pub fn classify_reply(reply_code: Option<u16>, status: Option<&str>, text: &str) -> Classification {
    let status = status
        .filter(|s| !s.is_empty())
        .or_else(|| codes::find_status(text));
    let reply_code = reply_code.or_else(|| codes::find_reply_code(text));
    let (reason, _) = reason_from_texts(reply_code, status, &[text]);
    let transient = match (status, reply_code) {
        (Some(s), _) if s.starts_with('4') => true,
        (Some(s), _) if s.starts_with('5') => false,
        (_, Some(c)) => (400..500).contains(&c),
        _ => false,
    };
    Classification::from_reason(
        reason,
        if transient {
            DeliveryKind::Transient
        } else {
            DeliveryKind::Permanent
        },
    )
}

impl Classification {
    pub(crate) fn from_reason(reason: Reason, kind: DeliveryKind) -> Classification {
        Classification {
            category: reason.category(),
            reason,
            hard: reason.is_hard(),
            kind,
        }
    }
}

/// The reason behind a failure, from the strongest evidence available, trying the texts most
/// specific first: a decisive status code, the phrase tables, the status code table, generic
/// wordings, the bare reply code. The flag is true when only weak evidence (generic wording
/// or the reply code alone) decided.
pub(crate) fn reason_from_texts(
    reply_code: Option<u16>,
    status: Option<&str>,
    texts: &[&str],
) -> (Reason, bool) {
    if let Some(r) = status.and_then(decisive_status) {
        return (r, false);
    }
    // Normalised lazily: the broad texts (the whole notice) are rarely needed.
    let texts = texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| normalize(t));
    let mut seen = Vec::new();
    for t in texts {
        if let Some(r) = phrases::match_reason(&t) {
            return (r, false);
        }
        seen.push(t);
    }
    let texts = seen;
    if let Some(r) = status.and_then(codes::reason_from_status) {
        return (r, false);
    }
    let weak = texts
        .iter()
        .find_map(|t| phrases::match_fallback(t))
        .or_else(|| reply_code.and_then(codes::reason_from_reply))
        .or_else(|| status.and_then(policy_status));
    (weak.unwrap_or(Reason::Undefined), true)
}

/// RFC 3463 X.7.0 / X.7.1 ("delivery not authorized, message refused") with words that
/// name no cause: the receiver's policy refused the mail.
fn policy_status(status: &str) -> Option<Reason> {
    let (_, rest) = status.split_once('.')?;
    matches!(rest, "7.0" | "7.1").then_some(Reason::PolicyViolation)
}

/// Codes whose meaning no wording can change.
fn decisive_status(status: &str) -> Option<Reason> {
    let (_, rest) = status.split_once('.')?;
    match rest {
        "7.26" | "7.509" | "7.510" | "7.23" | "7.20" | "7.21" | "7.22" | "7.24" => {
            Some(Reason::AuthFailure)
        }
        "7.25" => Some(Reason::RequirePtr),
        // Microsoft: 4.7.650-4.7.699 are reputation throttles, whatever the wording.
        r if r
            .strip_prefix("7.")
            .and_then(|d| d.parse::<u16>().ok())
            .is_some_and(|d| (650..700).contains(&d)) =>
        {
            Some(Reason::BadReputation)
        }
        "7.13" => Some(Reason::Suspend),
        _ => None,
    }
}

/// Wordings of a refusal at connection time (banner, HELO/EHLO).
const CONNECT_STAGE: &[&str] = &[
    "after initial connection",
    "in reply to helo",
    "in reply to ehlo",
    "after helo",
    "after ehlo",
    "smtp greeting",
    "in reply to the greeting",
    "while connected",
];

/// A failure reported "in reply to MAIL FROM" is about the sender, whatever the words say
/// about an unknown user or domain (Exim "after MAIL FROM", Postfix "in reply to MAIL FROM
/// command", Sendmail ">>> MAIL From:").
pub(crate) fn sender_stage(reason: Reason, weak: bool, text: &str) -> Reason {
    let address_like = weak
        || matches!(
            reason,
            Reason::UserUnknown
                | Reason::HostUnknown
                | Reason::HasMoved
                | Reason::NotAccept
                | Reason::Undefined
                | Reason::Suspend
                | Reason::Filtered
        );
    let lower = text.to_ascii_lowercase();
    if (reason == Reason::Undefined || weak) && CONNECT_STAGE.iter().any(|p| lower.contains(p)) {
        // Refused before any envelope was sent: the sending host itself is not wanted.
        return Reason::Blocked;
    }
    if !address_like {
        return reason;
    }
    let after_mail = [
        "after mail from",
        "in reply to mail from",
        ">>> mail from",
        "reply to mail from",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if after_mail {
        return Reason::Rejected;
    }
    // The address passed RCPT and was refused only after the message was seen: a filter at
    // the recipient refused this message (sisimai's "filtered").
    let after_data = [
        "in reply to end of data",
        "after end of data",
        "in reply to data",
        "after data",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if after_data && reason == Reason::UserUnknown {
        Reason::Filtered
    } else {
        reason
    }
}

/// Drops the `550-5.7.1 ` prefixes of multi-line replies (RFC 5321 §4.2.1) so the phrases
/// read across the lines; the codes themselves are taken from the raw text.
fn strip_reply_prefix(line: &str) -> &str {
    let t = line.trim_start();
    let b = t.as_bytes();
    let is_code = b.len() >= 4
        && matches!(b[0], b'2' | b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b[3], b' ' | b'-');
    if !is_code {
        return line;
    }
    let rest = &t[4..];
    match codes::find_status(rest) {
        Some(s) if rest.starts_with(s) => rest[s.len()..].trim_start(),
        _ => rest,
    }
}

/// Lower-cases and collapses runs of whitespace to one space, so phrases match across the
/// line folds MTAs put into long replies. Bounded: texts longer than 16 KiB are cut.
fn normalize_lines(text: &str) -> String {
    const MAX: usize = 16 * 1024;
    let mut out = String::with_capacity(text.len().min(MAX));
    let mut space = false;
    for c in text
        .lines()
        .flat_map(|l| strip_reply_prefix(l).chars().chain(std::iter::once('\n')))
    {
        if out.len() >= MAX {
            break;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Lower-cases and collapses whitespace (see `normalize_lines`), then drops the repeats of
/// the reply's `550 5.7.1` prefix that re-wrapping MTAs (Postfix) leave mid-line.
pub(crate) fn normalize(text: &str) -> String {
    let out = normalize_lines(text);
    let (Some(code), Some(status)) = (codes::find_reply_code(text), codes::find_status(text))
    else {
        return out;
    };
    let spaced = format!("{code} {status} ");
    let dashed = format!("{code}-{status} ");
    if out.contains(&spaced) || out.contains(&dashed) {
        out.replace(&spaced, "").replace(&dashed, "")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(code: Option<u16>, status: Option<&str>, text: &str) -> Category {
        classify_reply(code, status, text).category
    }

    #[test]
    fn postfix_user_unknown_is_a_hard_invalid_address() {
        let c = classify_reply(
            Some(550),
            Some("5.1.1"),
            "<x@y.test>: Recipient address rejected: User unknown in local recipient table",
        );
        assert_eq!(c.category, Category::InvalidAddress);
        assert!(c.hard);
        assert_eq!(c.kind, DeliveryKind::Permanent);
    }

    #[test]
    fn replies_land_in_their_categories() {
        let cases: &[(Option<u16>, Option<&str>, &str, Category)] = &[
            (
                Some(552),
                Some("5.2.2"),
                "Mailbox full",
                Category::MailboxFull,
            ),
            (
                Some(550),
                None,
                "5.7.26 Unauthenticated email from x is not accepted due to domain's DMARC policy",
                Category::Dmarc,
            ),
            (
                Some(554),
                None,
                "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
                Category::Blocked,
            ),
            (
                Some(421),
                Some("4.7.0"),
                "Try again slower",
                Category::RateLimit,
            ),
            (
                Some(550),
                Some("5.2.1"),
                "The email account that you tried to reach is disabled",
                Category::Mailbox,
            ),
            (
                Some(553),
                Some("5.1.8"),
                "Sender address rejected: Domain not found",
                Category::Rejection,
            ),
            (
                None,
                Some("4.4.7"),
                "retry timeout exceeded",
                Category::RecipientError,
            ),
            (
                Some(552),
                Some("5.3.4"),
                "Message size exceeds fixed limit",
                Category::Rejection,
            ),
        ];
        for (code, status, text, want) in cases {
            assert_eq!(cat(*code, *status, text), *want, "{text}");
        }
    }

    #[test]
    fn provider_replies_without_precise_codes_are_read_from_their_words() {
        let cases: &[(u16, &str, Category)] = &[
            (
                421,
                "4.7.0 [192.0.2.1] This message does not have authentication information or fails to pass authentication checks (SPF or DKIM).",
                Category::Dmarc,
            ),
            (
                554,
                "Email rejected due to security policies",
                Category::Blocked,
            ),
            (
                550,
                "Anti-Spoofing policy - Inbound not allowed",
                Category::Blocked,
            ),
            (
                421,
                "4.7.0 IP not in whitelist for RCPT domain",
                Category::Blocked,
            ),
            (550, "Ip frequency limited", Category::RateLimit),
            (550, "Envelope blocked - User Entry", Category::Rejection),
            (554, "5.7.1 - ERROR: Mail refused", Category::Blocked),
            (
                550,
                "Requested action not taken: no valid recipients",
                Category::InvalidAddress,
            ),
            (552, "Postfach voll", Category::MailboxFull),
        ];
        for (code, text, want) in cases {
            assert_eq!(cat(Some(*code), None, text), *want, "{text}");
        }
    }

    #[test]
    fn transient_replies_are_transient() {
        let c = classify_reply(Some(452), Some("4.2.2"), "Mailbox over quota");
        assert_eq!(c.kind, DeliveryKind::Transient);
        assert_eq!(c.category, Category::MailboxFull);
    }

    #[test]
    fn normalize_folds_lines_and_case() {
        assert_eq!(
            normalize("said: 550\n    5.2.2  Mailbox\tFULL "),
            "said: mailbox full"
        );
        assert_eq!(
            normalize("smtp; 550-5.7.1 [192.0.2.1] Messages with\n multiple 550 5.7.1 addresses"),
            "smtp; [192.0.2.1] messages with multiple addresses"
        );
        assert_eq!(
            normalize("550-5.7.1 Messages with multiple\n550 5.7.1 addresses in From"),
            "messages with multiple addresses in from"
        );
    }
}
