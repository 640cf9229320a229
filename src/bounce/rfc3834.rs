//! Telling bounces from other automatic mail: RFC 3834 auto-replies (vacation, out of
//! office), and what marks a message as a non-delivery notice when no RFC 3464 part does.

use super::document::Document;

/// Local parts that send delivery notices.
const DAEMONS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "mail-daemon",
    "maildaemon",
    "mailerdaemon",
    "mdaemon",
    "mailer_daemon",
    "mail.daemon",
    "mail-delivery",
    "nobody",
    "no-reply-bounce",
    "bounce",
    "bounces",
];

/// Subject words of non-delivery notices (lower case).
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery fail",
    "delivery status notification",
    "mail delivery failed",
    "returned mail",
    "failure notice",
    "non-delivery",
    "nondeliverable",
    "delivery problem",
    "could not be delivered",
    "returned to sender",
    "delivery failure",
    "mail system error",
    "delivery notification",
    "error sending",
    "delivery has failed",
    "not delivered",
    "rejected",
    "warning: could not send",
    "mail delivery",
    "delivery report",
    "there was an error",
    "unable to deliver",
    "delivery status",
    "message blocked",
    "bounce",
    "エラー",
    "不達",
    "配信",
];

/// From display names of delivery systems.
const BOUNCE_NAMES: &[&str] = &[
    "mail delivery",
    "mailer-daemon",
    "postmaster",
    "mail administrator",
];

/// Sentences of non-delivery notices; with a returned message attached they make a bounce
/// even when headers and subject say nothing (carrier and appliance notices).
const BOUNCE_BODY: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "undeliverable",
    "delivery has failed",
    "was not delivered",
    "were not delivered",
    "unable to deliver",
    "permanent fatal error",
    "delivery failed",
    "failed to deliver",
    "error delivering",
    "not be delivered to",
    "delivery to the following recipient",
    "rejected by a remote mail server",
    "送信できませんでした",
    "届きませんでした",
    "配送できません",
    "配信できません",
];

/// Whether the message presents itself as a non-delivery notice.
pub(crate) fn looks_like_bounce(doc: &Document) -> bool {
    let local = doc.from.split('@').next().unwrap_or("");
    let subject = doc.subject.to_lowercase();
    DAEMONS.contains(&local)
        || doc.header("x-failed-recipients").is_some()
        || BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s))
        || doc.header("from").is_some_and(|f| {
            BOUNCE_NAMES
                .iter()
                .any(|n| f.to_ascii_lowercase().contains(n))
        })
        || (returned_message(doc) && {
            let head: String = doc
                .notice
                .chars()
                .take(4000)
                .collect::<String>()
                .to_lowercase();
            BOUNCE_BODY.iter().any(|p| head.contains(p))
        })
}

fn returned_message(doc: &Document) -> bool {
    doc.original.message_id.is_some() || !doc.original.to.is_empty()
}

/// Subject prefixes and words of auto-replies (lower case).
const AUTOREPLY_SUBJECTS: &[&str] = &[
    "auto:",
    "automatic reply",
    "autoreply",
    "auto-reply",
    "auto reply",
    "out of office",
    "out of the office",
    "vacation",
    "away from",
    "absence",
    "abwesenheit",
    "réponse automatique",
    "automatische antwort",
    "自動応答",
    "自動返信",
    "respuesta automática",
];

/// RFC 3834 §5: `Auto-Submitted: auto-replied`, plus the vendor headers (X-Autoreply,
/// X-Autorespond, Precedence: auto_reply, X-Auto-Response-Suppress) and subjects.
pub(crate) fn is_auto_reply(doc: &Document) -> bool {
    let auto = doc.header("auto-submitted").is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        v.starts_with("auto-replied") || v.starts_with("auto-generated")
    });
    let vendor = doc.header("x-autoreply").is_some()
        || doc.header("x-autorespond").is_some()
        || doc.header("x-autoresponse").is_some()
        || doc
            .header("precedence")
            .is_some_and(|v| v.eq_ignore_ascii_case("auto_reply"));
    let subject = doc.subject.to_lowercase();
    auto || vendor || AUTOREPLY_SUBJECTS.iter().any(|s| subject.contains(s))
}
