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
    // Machines that take no replies: an appliance or service writes these, never a person.
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
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
    "returning to sender",
    "mail failed",
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
    // Chinese and Korean notices ("returned letter", "delivery failed", "sending failed").
    "退信",
    "投递失败",
    "발송 실패",
    "반송",
    // Localised Exchange / Outlook NDR subjects.
    "unzustellbar",
    "non remis",
    "non recapitabile",
    "onbestelbaar",
    "no se puede entregar",
    "não entregue",
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
    "failed addresses",
    "failed recipient",
    "no valid recipients",
    "not been delivered",
    "was blocked by",
    "无法投递",
    "未能成功投递",
    "投递失败",
    "退信原因",
    "발송되지 않았습니다",
    "전달되지 않았습니다",
    "送信できませんでした",
    "届きませんでした",
    "配送できません",
    "配信できません",
];

/// Whether the message presents itself as a non-delivery notice: a notice sender (daemon
/// address or name) with some sign of a failure, or a bounce subject, an
/// `X-Failed-Recipients` header, or a returned message under non-delivery words. A mail from
/// `postmaster@` or `nobody@` that names no failure code or cause (a welcome note, cron
/// output) is none.
pub(crate) fn looks_like_bounce(doc: &Document) -> bool {
    let local = doc.from.split('@').next().unwrap_or("");
    let subject = doc.subject.to_lowercase();
    let head = || -> String {
        doc.notice
            .chars()
            .take(4000)
            .collect::<String>()
            .to_lowercase()
    };
    // A person writing about a failed delivery ("Delivery failure when writing to your
    // team") uses the notices' words; without a returned message that is all there is.
    let bounce_subject = !is_reply_subject(&subject)
        && BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s))
        && (returned_message(doc) || !from_a_person(doc));
    if bounce_subject || doc.header("x-failed-recipients").is_some() {
        return true;
    }
    // RFC 3834 `auto-generated`: a machine wrote this (relays of ESP bounce webhooks,
    // appliances); an auto-reply (`auto-replied`) is a person's mailbox answering.
    let generated = doc
        .header("auto-submitted")
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("auto-generated"));
    let notice_sender = DAEMONS.contains(&local)
        || generated
        || doc.header("from").is_some_and(|f| {
            BOUNCE_NAMES
                .iter()
                .any(|n| f.to_ascii_lowercase().contains(n))
        });
    if !notice_sender && !returned_message(doc) {
        return false;
    }
    let head = head();
    if BOUNCE_BODY.iter().any(|p| head.contains(p)) {
        return true;
    }
    // A daemon's notice without the usual words still quotes the refusal's code.
    notice_sender
        && (returned_message(doc)
            || names_a_failure_code(&head)
            || super::phrases::match_reason(&super::normalize::normalize(&head)).is_some())
}

/// Words of a From display name or local part that name a system, not a person.
const SYSTEM_WORDS: &[&str] = &[
    "mail",
    "deliver",
    "system",
    "daemon",
    "postmaster",
    "admin",
    "server",
    "service",
    "security",
    "team",
    "notif",
    "support",
    "relay",
    "webhook",
    "filter",
    "gateway",
    "robot",
    "auto",
    "reply",
    "bounce",
    "report",
    "alert",
    "helpdesk",
    "noreply",
    "no-reply",
    "info",
    "firewall",
    "spam",
    "virus",
    "quarantine",
    "scanner",
    "center",
    "centre",
    "mta",
    "exchange",
    "outlook",
];

/// Whether the From names a person ("Carla Rossi <carla@…>"): a display name whose words
/// the address is made of, and neither has a system's word. Notices come from daemons,
/// appliances and services, which say so in their address or name.
fn from_a_person(doc: &Document) -> bool {
    let Some(raw) = doc.header("from") else {
        return false;
    };
    let Some((name, _)) = raw.split_once('<') else {
        return false;
    };
    let name = name.trim().trim_matches('"').trim().to_lowercase();
    let local = doc.from.split('@').next().unwrap_or("");
    let words = name.split_whitespace().count();
    let system = |s: &str| SYSTEM_WORDS.iter().any(|w| s.contains(w));
    let named_after = name
        .split(|c: char| !c.is_alphabetic())
        .any(|w| w.chars().count() >= 3 && local.contains(w));
    (1..=4).contains(&words)
        && named_after
        && !system(&name)
        && !system(local)
        && !DAEMONS.contains(&local)
}

/// A 4xx/5xx reply code or enhanced status code anywhere in the text.
fn names_a_failure_code(text: &str) -> bool {
    let status = super::codes::find_failure_status(text).is_some_and(|s| !s.starts_with('2'));
    let reply = super::codes::find_failure_reply_code(text).is_some_and(|c| c >= 400);
    status || reply
}

/// `Re: undelivered invoice?` is a person writing about a bounce, not a notice: notices put
/// their own words first (`Undeliverable: Re: ...`).
fn is_reply_subject(subject: &str) -> bool {
    const PREFIXES: &[&str] = &["re:", "fw:", "fwd:", "aw:", "wg:", "sv:", "tr:", "rv:"];
    let s = subject.trim_start();
    PREFIXES.iter().any(|p| s.starts_with(p))
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

/// Fields [`is_auto_reply`] reads, besides the Subject.
const AUTOREPLY_FIELDS: &[&str] = &[
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponse",
    "precedence",
];

/// Whether the raw header section `head` leaves [`is_auto_reply`] a chance to say yes.
/// `false` only for a clean header (ASCII, CRLF or LF line ends, every field named) with
/// none of the fields it reads and one Subject, without encoded words, that holds none of
/// [`AUTOREPLY_SUBJECTS`] even with every blank removed: the MIME parser's decoding may
/// unfold or squeeze blanks, but cannot add letters to such a subject. Lets the delivery
/// skip a MIME parse of every ordinary message (issue 13); anything unusual says `true`
/// and is parsed.
pub(crate) fn may_be_auto_reply(head: &[u8]) -> bool {
    let bare_cr = memchr::memchr_iter(b'\r', head).any(|i| head.get(i + 1) != Some(&b'\n'));
    if !head.is_ascii() || bare_cr {
        return true;
    }
    let mut subjects = 0;
    for f in crate::message::fields(head) {
        let name = f.name();
        if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
            return true;
        }
        if AUTOREPLY_FIELDS
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            return true;
        }
        if name.eq_ignore_ascii_case(b"subject") {
            subjects += 1;
            let value = f.value();
            if subjects > 1 || memchr::memmem::find(value, b"=?").is_some() {
                return true;
            }
            let squeezed = squeeze(value);
            if squeezed_subjects()
                .iter()
                .any(|s| memchr::memmem::find(&squeezed, s).is_some())
            {
                return true;
            }
        }
    }
    false
}

/// `text` lower-cased (ASCII) without its blanks and line breaks.
fn squeeze(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_lowercase)
        .collect()
}

/// [`AUTOREPLY_SUBJECTS`] squeezed, once: the filter runs for every ERP-bound message.
fn squeezed_subjects() -> &'static [Vec<u8>] {
    static SQUEEZED: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SQUEEZED.get_or_init(|| {
        AUTOREPLY_SUBJECTS
            .iter()
            .map(|s| squeeze(s.as_bytes()))
            .collect()
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::{ReportKind, parse};

    /// The parser's verdict on `raw` is an auto-reply only where the header filter lets it
    /// be asked: the filter may say "maybe" too often, never "no" wrongly.
    fn check(raw: &[u8]) -> bool {
        let maybe = may_be_auto_reply(crate::message::header_section(raw));
        let parsed = parse(raw).kind == ReportKind::AutoReply;
        assert!(
            maybe || !parsed,
            "filtered out an auto-reply:\n{}",
            String::from_utf8_lossy(raw)
        );
        maybe
    }

    #[test]
    fn the_header_filter_never_hides_an_auto_reply_of_the_test_mail() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
        let dirs = [
            "fixtures/dsn",
            "bounce_unseen_mail/emails",
            "bounce_unseen_mail_b/emails",
        ];
        let (mut seen, mut skipped) = (0, 0);
        for dir in dirs {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).expect(dir) {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "eml") {
                    let raw = std::fs::read(&path).expect("read");
                    seen += 1;
                    skipped += usize::from(!check(&raw));
                }
            }
        }
        assert!(seen >= 149, "only {seen} messages read");
        // Notices often carry Auto-Submitted or 8-bit fields and are parsed; the plain ones
        // (and the ordinary mail among them) must skip it, or the filter saves nothing.
        assert!(skipped > 0, "the filter never let a message skip the parse");
    }

    #[test]
    fn every_auto_reply_subject_however_folded_or_cased_is_parsed() {
        let mut forms = Vec::new();
        for s in AUTOREPLY_SUBJECTS {
            forms.push(s.to_string());
            forms.push(s.to_uppercase());
            forms.push(format!("Re: {} - back Monday", s.replace(' ', "  ")));
            forms.push(s.replace(' ', "\r\n\t"));
            forms.push(format!("Weekly\r\n {s}"));
        }
        for subject in forms {
            let raw = format!(
                "From: Bob Smith <bob@client.test>\r\nTo: sales@example.test\r\nSubject: {subject}\r\n\r\nI am away.\r\n"
            );
            check(raw.as_bytes());
            if subject.is_ascii() {
                assert!(
                    may_be_auto_reply(crate::message::header_section(raw.as_bytes())),
                    "{subject}"
                );
            }
        }
    }

    #[test]
    fn ordinary_mail_skips_the_parse_and_anything_unusual_does_not() {
        let plain = "From: Bob <bob@client.test>\r\nTo: sales@example.test\r\nSubject: Quote for 20 chairs\r\nMessage-ID: <1@client.test>\r\n";
        assert!(!may_be_auto_reply(plain.as_bytes()));
        for extra in [
            "Auto-Submitted: no\r\n",
            "X-Autoresponse: 1\r\n",
            "Precedence: list\r\n",
            "Subject: second subject\r\n",
            "Subject: =?utf-8?q?R=C3=A9ponse_automatique?=\r\n",
            "X-Name: caf\u{e9}\r\n",
            "Keywords: a\rb\r\n",
            " leading blank line\r\n",
            "no colon here\r\n",
            "Bad Name: x\r\n",
        ] {
            let head = if extra.starts_with(' ') {
                format!("{extra}{plain}")
            } else {
                format!("{plain}{extra}")
            };
            assert!(may_be_auto_reply(head.as_bytes()), "{extra:?}");
        }
    }
}
