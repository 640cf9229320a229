//! Classification: (reply code, enhanced status code, diagnostic text) → `Classification`.
//!
//! The same function serves DSNs received at `bounce+TOKEN@` and the replies mxgate's own
//! delivery attempts get, so synchronous and asynchronous bounces land in one table.
//! Order of evidence: a status code that can only mean one thing (RFC 3463 rows marked
//! decisive: X.2.2 full, X.7.26 authentication) → the diagnostic phrase tables → the
//! product's code table (`code_table`) → provider code ranges → the rest of the RFC 3463 table → generic wordings → the bare reply code →
//! `Recipient Error` when nothing speaks. Every step is a named rule (`rules::RuleId`).

use std::cell::OnceCell;

use serde::Serialize;

use super::category::{Category, DeliveryKind, Reason};
use super::normalize::normalize;
use super::rfc3463::{self, Strength};
use super::rules::{Probe, RuleId, Rules};
use super::{code_table, codes, phrases};

/// The verdict on one failed recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub category: Category,
    pub reason: Reason,
    /// Words or a status code with one meaning decided, not only the code table, a bare
    /// reply code or a generic wording ("recipient rejected"): a verdict to act on.
    pub certain: bool,
    /// The address is dead (unknown user or host, moved, domain takes no mail), and the
    /// verdict is `certain`: a bare "550" the code table files under Invalid address says
    /// nothing about the mailbox.
    pub hard: bool,
    pub kind: DeliveryKind,
}

/// Classifies one SMTP reply or DSN diagnostic, e.g.
/// `classify_reply(Some(550), Some("5.1.1"), "<x@y.test>: Recipient address rejected: User unknown")`.
/// `status` may be `None`; then one is looked for in `text`.
pub fn classify_reply(reply_code: Option<u16>, status: Option<&str>, text: &str) -> Classification {
    classify_reply_with(reply_code, status, text, &Rules::all()).0
}

/// [`classify_reply`] with some rules switched off; also returns the rule that decided.
pub fn classify_reply_with(
    reply_code: Option<u16>,
    status: Option<&str>,
    text: &str,
    rules: &Rules,
) -> (Classification, RuleId) {
    let status = status
        .filter(|s| !s.is_empty())
        .or_else(|| codes::find_status(text));
    let reply_code = reply_code.or_else(|| codes::find_reply_code(text));
    let mut probe = Probe::new(rules, false);
    let norm = OnceCell::new();
    let v = reason_from_texts(reply_code, status, &[Text::new(text, &norm)], 1, &mut probe);
    let transient = match (status, reply_code) {
        (Some(s), _) if s.starts_with('4') => true,
        (Some(s), _) if s.starts_with('5') => false,
        (_, Some(c)) => (400..500).contains(&c),
        _ => false,
    };
    let v = transient_class(v, transient, status, &mut probe);
    let kind = if transient {
        DeliveryKind::Transient
    } else {
        DeliveryKind::Permanent
    };
    let certain = certain(&v, status);
    (Classification::from_reason(v.reason, kind, certain), v.rule)
}

impl Classification {
    pub(crate) fn from_reason(reason: Reason, kind: DeliveryKind, certain: bool) -> Classification {
        Classification {
            category: reason.category(),
            reason,
            certain,
            hard: certain && reason.is_hard(),
            kind,
        }
    }
}

/// The reason behind a failure and the rule that gave it. `weak` when only a generic
/// wording, the bare reply code or nothing at all decided.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verdict {
    pub reason: Reason,
    pub weak: bool,
    pub rule: RuleId,
}

/// A text the classifier reads and its normalised form (`normalize`), made at most once:
/// the notice is shared by every recipient of a report, and most verdicts never need it.
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    raw: &'a str,
    norm: &'a OnceCell<String>,
}

impl<'a> Text<'a> {
    pub fn new(raw: &'a str, norm: &'a OnceCell<String>) -> Text<'a> {
        Text { raw, norm }
    }

    fn is_blank(&self) -> bool {
        self.raw.trim().is_empty()
    }

    fn normalized(&self) -> &'a str {
        self.norm.get_or_init(|| normalize(self.raw))
    }
}

/// The reason behind a failure, from the strongest evidence available (see the module doc).
/// The first `specific` texts speak about this recipient (its Diagnostic-Code, its block of
/// the notice); the rest (the whole notice) are read after the status table, since a notice
/// also holds boilerplate. When the probe traces, every step runs so that every matching
/// rule is recorded; otherwise the first verdict returns.
pub(crate) fn reason_from_texts(
    reply_code: Option<u16>,
    status: Option<&str>,
    texts: &[Text<'_>],
    specific: usize,
    probe: &mut Probe<'_>,
) -> Verdict {
    let tracing = probe.matched.is_some();
    let row = status.and_then(rfc3463::row);
    let mut out = None;
    if let Some((reason, Strength::Decisive, id)) = row {
        out = pick(out, probe, RuleId::Status(id), reason, false);
    }
    let (near, far) = texts.split_at(specific.min(texts.len()));
    let wordless = texts.iter().all(Text::is_blank);
    // Normalised lazily: the broad texts (the whole notice) are rarely needed.
    let mut seen = Vec::new();
    for t in near {
        if out.is_some() && !tracing {
            return out.unwrap_or_else(nothing);
        }
        out = read_text(out, *t, &mut seen, probe);
    }
    if let Some(reply) = reply_code
        && let Some((spelled, category)) = code_table::lookup(reply, status, wordless)
    {
        let rule = RuleId::CodeTable(reply, spelled);
        // Weak: the code alone, so the SMTP stage a refusal came at still speaks over it.
        out = pick(out, probe, rule, code_table::reason(category), true);
    }
    if let Some((reason, id)) = status.and_then(rfc3463::provider_row) {
        out = pick(out, probe, RuleId::ProviderStatus(id), reason, false);
    }
    if let Some((reason, Strength::Table, id)) = row {
        out = pick(out, probe, RuleId::Status(id), reason, false);
    }
    // The notice's words still speak over a verdict of the code table alone (weak).
    for t in far {
        let strong = out.filter(|v| !v.weak);
        if strong.is_some() && !tracing {
            return out.unwrap_or_else(nothing);
        }
        out = read_text(strong, *t, &mut seen, probe).or(out);
    }
    for t in &seen {
        if let Some((reason, rule)) = phrases::match_fallback_with(t, probe) {
            out = out.or(Some(Verdict {
                reason,
                weak: true,
                rule,
            }));
        }
    }
    if let Some((reason, code)) = reply_code.and_then(codes::reason_from_reply) {
        out = pick(out, probe, RuleId::Reply(code), reason, true);
    }
    if let Some((reason, id)) = status.and_then(policy_status) {
        out = pick(out, probe, RuleId::Status(id), reason, true);
    }
    out.unwrap_or_else(nothing)
}

/// The exact phrases, then the concepts, of one text; keeps the normalised text in `seen`.
fn read_text<'a>(
    cur: Option<Verdict>,
    text: Text<'a>,
    seen: &mut Vec<&'a str>,
    probe: &mut Probe<'_>,
) -> Option<Verdict> {
    if text.is_blank() {
        return cur;
    }
    let t = text.normalized();
    let tracing = probe.matched.is_some();
    let mut out = cur;
    for find in [phrases::explain_with, phrases::concept_with] {
        if out.is_some() && !tracing {
            break;
        }
        if let Some((reason, rule)) = find(t, probe) {
            out = out.or(Some(Verdict {
                reason,
                weak: false,
                rule,
            }));
        }
    }
    seen.push(t);
    out
}

/// RFC 3463 §3.1: class 4 is a transient failure, and a domain that does not exist is no
/// transient condition; a 4.x.x "host not found" is a resolver failing, a network error.
/// RFC 3463 §3.8: a class 4 X.7 code is the receiver's policy deferring this sender for now;
/// with words that name no other cause ("server busy", "try again later", none at all) that
/// is a throttle: the receiver wants this sender's mail slower.
pub(crate) fn transient_class(
    v: Verdict,
    transient: bool,
    status: Option<&str>,
    probe: &mut Probe<'_>,
) -> Verdict {
    if !transient {
        return v;
    }
    if v.reason == Reason::HostUnknown && probe.hit(RuleId::Stage("transient")) {
        return Verdict {
            reason: Reason::NetworkError,
            weak: false,
            rule: RuleId::Stage("transient"),
        };
    }
    let policy_class = status.is_some_and(|s| s.starts_with("4.7."));
    let causeless = v.weak
        || matches!(
            v.reason,
            Reason::SystemError | Reason::NetworkError | Reason::Undefined
        );
    if policy_class && causeless && probe.hit(RuleId::Stage("policy-deferral")) {
        return Verdict {
            reason: Reason::Speeding,
            weak: false,
            rule: RuleId::Stage("policy-deferral"),
        };
    }
    v
}

/// `cur` if already decided, else `reason` when `rule` is on.
fn pick(
    cur: Option<Verdict>,
    probe: &mut Probe<'_>,
    rule: RuleId,
    reason: Reason,
    weak: bool,
) -> Option<Verdict> {
    if !probe.hit(rule) {
        return cur;
    }
    cur.or(Some(Verdict { reason, weak, rule }))
}

/// Whether `v` is a verdict to act on (suppress an address): the words or a status code
/// with one meaning decided it, or the status code's RFC 3463 row names the category the
/// weak rule chose ("550 5.1.1" without words: the code table decided, and X.1.1 "the
/// mailbox does not exist" says the same). A bare "550", or "550 5.7.1" (X.7.1 is policy),
/// filed under Invalid address by the code table alone, is not.
pub(crate) fn certain(v: &Verdict, status: Option<&str>) -> bool {
    let agrees = |s| rfc3463::row(s).is_some_and(|(r, ..)| r.category() == v.reason.category());
    !v.weak || status.is_some_and(agrees)
}

fn nothing() -> Verdict {
    Verdict {
        reason: Reason::Undefined,
        weak: true,
        rule: RuleId::Nothing,
    }
}

/// RFC 3463 X.7.0 / X.7.1 ("delivery not authorized, message refused") with words that
/// name no cause: the receiver's policy refused the mail.
fn policy_status(status: &str) -> Option<(Reason, &'static str)> {
    let (_, rest) = status.split_once('.')?;
    matches!(rest, "7.0" | "7.1").then_some((Reason::PolicyViolation, "X.7.0-1"))
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
    fn a_transient_policy_code_without_a_cause_is_a_throttle() {
        for text in [
            "451 4.7.500 Server busy. Please try again later from [192.0.2.1].",
            "421 4.7.0 Try again later, closing connection.",
        ] {
            assert_eq!(cat(None, None, text), Category::RateLimit, "{text}");
        }
        // Words that name the cause keep it; a permanent X.7 is no deferral.
        assert_eq!(
            cat(
                None,
                None,
                "421 4.7.0 [192.0.2.1] blocked using zen.spamhaus.org"
            ),
            Category::Blocked
        );
        assert_ne!(
            cat(None, None, "554 5.7.0 Server busy"),
            Category::RateLimit
        );
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
