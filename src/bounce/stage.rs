//! The SMTP stage and the addresses a refusal names: evidence outside the words' meaning.
//! A refusal at the greeting is about the sending host, one after `MAIL FROM` or naming the
//! sender's address is about the sender, one after the message was seen is a filter's.
//! These run after `classify::reason_from_texts` and may overrule a verdict of codes or
//! generic wordings (weak), never one the words gave.

use super::category::Reason;
use super::classify::Verdict;
use super::rules::{Probe, RuleId};

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
    // Postfix (smtp_connect.c): the server's greeting was a refusal.
    "refused to talk to me",
];

/// A failure reported "in reply to MAIL FROM" is about the sender, whatever the words say
/// about an unknown user or domain (Exim "after MAIL FROM", Postfix "in reply to MAIL FROM
/// command", Sendmail ">>> MAIL From:").
pub(crate) fn sender_stage(v: Verdict, text: &str, probe: &mut Probe<'_>) -> Verdict {
    let reason = v.reason;
    let address_like = v.weak
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
    // Folded: notices wrap "(in reply to end of\n    DATA command)" anywhere.
    let lower = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let stage = |reason, id| Verdict {
        reason,
        weak: false,
        rule: RuleId::Stage(id),
    };
    // A refusal worded at the greeting means the server answered: a "connection failed"
    // reading of the same words ("host ... refused") is wrong.
    if (reason == Reason::Undefined || reason == Reason::NetworkError || v.weak)
        && CONNECT_STAGE.iter().any(|p| lower.contains(p))
        && probe.hit(RuleId::Stage("connect"))
    {
        // Refused before any envelope was sent: the sending host itself is not wanted.
        return stage(Reason::Blocked, "connect");
    }
    if !address_like {
        return v;
    }
    let after_mail = [
        "after mail from",
        "in reply to mail from",
        ">>> mail from",
        "reply to mail from",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if after_mail && probe.hit(RuleId::Stage("mail-from")) {
        return stage(Reason::Rejected, "mail-from");
    }
    // The address passed RCPT and was refused only after the message was seen: a filter at
    // the recipient refused this message (sisimai's "filtered"), also when no words say why.
    let after_data = [
        "in reply to end of data",
        "after end of data",
        "in reply to data",
        "after data",
    ]
    .iter()
    .any(|p| lower.contains(p));
    let unexplained_or_user = matches!(reason, Reason::UserUnknown | Reason::Undefined);
    if after_data && unexplained_or_user && probe.hit(RuleId::Stage("data")) {
        stage(Reason::Filtered, "data")
    } else {
        v
    }
}

/// A refusal whose words name the original sender's address and not the recipient's is
/// about the sender ("Email address is not verified ... identities failed the check:
/// sender@..."): Rejection, when nothing but codes or generic wordings decided. A verdict
/// the words gave stands: a transcript quoting `MAIL FROM:<sender>` does not turn an unknown
/// user into the sender's fault.
pub(crate) fn sender_named(
    v: Verdict,
    text: &str,
    senders: &[&str],
    recipient: &str,
    probe: &mut Probe<'_>,
) -> Verdict {
    if !v.weak {
        return v;
    }
    let lower = text.to_lowercase();
    let recipient = recipient.to_lowercase();
    let named = |a: &str| a.contains('@') && lower.contains(&a.to_lowercase());
    let sender = senders
        .iter()
        .any(|s| named(s) && !s.eq_ignore_ascii_case(&recipient));
    if sender && !named(&recipient) && probe.hit(RuleId::Stage("sender-named")) {
        return Verdict {
            reason: Reason::Rejected,
            weak: false,
            rule: RuleId::Stage("sender-named"),
        };
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::rules::Rules;

    fn verdict(reason: Reason, weak: bool) -> Verdict {
        Verdict {
            reason,
            weak,
            rule: RuleId::Nothing,
        }
    }

    #[test]
    fn a_refusal_at_the_greeting_is_a_block_not_a_connection_failure() {
        let rules = Rules::all();
        let mut probe = Probe::new(&rules, false);
        let text =
            "host mx.example.net[192.0.2.1] refused to talk to me: 421 Service not\n    available";
        let v = sender_stage(verdict(Reason::NetworkError, false), text, &mut probe);
        assert_eq!(v.reason, Reason::Blocked);
        // A connection that never reached a greeting stays a network error.
        let refused = "connect to mx.example.net[192.0.2.1]:25: Connection refused";
        let v = sender_stage(verdict(Reason::NetworkError, false), refused, &mut probe);
        assert_eq!(v.reason, Reason::NetworkError);
    }

    #[test]
    fn an_unexplained_refusal_after_end_of_data_is_a_filter() {
        let rules = Rules::all();
        let mut probe = Probe::new(&rules, false);
        // Wrapped as Postfix wraps it.
        let text =
            "said: 554 Transaction failed: Duplicate header (in reply to end of\n    DATA command)";
        let v = sender_stage(verdict(Reason::Undefined, true), text, &mut probe);
        assert_eq!(v.reason, Reason::Filtered);
        // Words that gave a cause keep it.
        let v = sender_stage(verdict(Reason::SpamDetected, false), text, &mut probe);
        assert_eq!(v.reason, Reason::SpamDetected);
    }

    #[test]
    fn a_reply_naming_the_sender_not_the_recipient_is_a_rejection() {
        let weak = Verdict {
            reason: Reason::Undefined,
            weak: true,
            rule: RuleId::Nothing,
        };
        let text = "554 Message rejected: Email address is not verified: s@example.test";
        let rules = Rules::all();
        let mut probe = Probe::new(&rules, false);
        let v = sender_named(weak, text, &["S@example.test"], "r@example.org", &mut probe);
        assert_eq!(v.reason, Reason::Rejected);
        // Naming the recipient too, or a verdict the words gave, stays as it was.
        let both = format!("{text} r@example.org");
        let v = sender_named(
            weak,
            &both,
            &["s@example.test"],
            "r@example.org",
            &mut probe,
        );
        assert_eq!(v.reason, Reason::Undefined);
        let strong = Verdict {
            reason: Reason::UserUnknown,
            weak: false,
            rule: RuleId::Nothing,
        };
        let v = sender_named(
            strong,
            text,
            &["s@example.test"],
            "r@example.org",
            &mut probe,
        );
        assert_eq!(v.reason, Reason::UserUnknown);
    }
}
