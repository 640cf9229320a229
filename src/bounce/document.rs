//! MIME walk (mail-parser): splits a bounce into the pieces the parsers read — the
//! human-readable notice (cut before the returned message), the `message/delivery-status`
//! fields (RFC 3464), the `message/feedback-report` (RFC 5965) and what is known of the
//! original message.

use std::cell::OnceCell;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::codes;

/// The pieces of a bounce.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub subject: String,
    /// Lower-cased address of the From header.
    pub from: String,
    /// Lower-cased addresses of the To header (the original sender, for a bounce).
    pub to: Vec<String>,
    /// `type/subtype` of the top level, lower case.
    pub content_type: String,
    pub report_type: String,
    /// Top-level headers, names lower-cased, values unfolded.
    pub headers: Vec<(String, String)>,
    /// Human-readable text of the notice, without the returned message.
    pub notice: String,
    pub dsn: Option<String>,
    pub feedback: Option<String>,
    pub original: Original,
    /// What every recipient of a report reads in the notice, worked out once per report (a
    /// report of 200 recipients normalised and scanned the notice 200 times).
    notice_views: NoticeViews,
}

#[derive(Debug, Default)]
struct NoticeViews {
    normalized: OnceCell<String>,
    reply_code: OnceCell<Option<u16>>,
    status: OnceCell<Option<String>>,
}

/// What the returned message (or its headers) tells.
#[derive(Debug, Default)]
pub(crate) struct Original {
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
}

impl Document {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The notice lower-cased and folded for the phrase tables (`normalize::normalize`).
    pub fn notice_normalized(&self) -> &OnceCell<String> {
        &self.notice_views.normalized
    }

    /// The failure reply code the notice quotes (`codes::find_failure_reply_code`).
    pub fn notice_reply_code(&self) -> Option<u16> {
        *self
            .notice_views
            .reply_code
            .get_or_init(|| codes::find_failure_reply_code(&self.notice))
    }

    /// The failure status code the notice quotes (`codes::find_failure_status`).
    pub fn notice_status(&self) -> Option<&str> {
        self.notice_views
            .status
            .get_or_init(|| codes::find_failure_status(&self.notice).map(str::to_owned))
            .as_deref()
    }

    /// RFC 3834 §5: any `Auto-Submitted` but `no`: a machine sent this message.
    pub fn auto_submitted(&self) -> bool {
        self.header("auto-submitted")
            .is_some_and(|v| !v.trim().to_ascii_lowercase().starts_with("no"))
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The top-level headers the parsers look at (kept unfolded, names lower-cased).
const KEPT_HEADERS: &[&str] = &[
    "from",
    "auto-submitted",
    "x-failed-recipients",
    "x-failed-recipient",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponse",
    "x-postfix-sender",
    "x-original-envelope-id",
];

/// Only the headers the bounce parser reads are parsed structurally (MIME, addresses,
/// subject, ids); the rest, notably Received (the costliest), are kept raw.
pub(crate) static PARSER: LazyLock<mail_parser::MessageParser> = LazyLock::new(|| {
    mail_parser::MessageParser::new()
        .with_minimal_headers()
        .with_message_ids()
});

/// Builds the document from a parsed message.
pub(crate) fn build(msg: &Message<'_>) -> Document {
    let mut doc = Document {
        subject: msg.subject().unwrap_or("").to_owned(),
        from: first_address(msg.from()),
        to: all_addresses(msg.to()),
        headers: msg
            .headers_raw()
            .take(200)
            .filter(|(n, _)| KEPT_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(n)))
            .map(|(n, v)| (n.to_ascii_lowercase(), crate::message::unfold(v)))
            .collect(),
        ..Document::default()
    };
    if let Some(ct) = msg.content_type() {
        doc.content_type =
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase();
        doc.report_type = ct
            .attribute("report-type")
            .unwrap_or("")
            .to_ascii_lowercase();
    }
    let mut texts = Vec::new();
    let mut html = Vec::new();
    for part in msg.parts.iter().take(64) {
        visit(part, &mut doc, &mut texts, &mut html);
    }
    if texts.is_empty() {
        texts = html.iter().map(|h| strip_html(h)).collect();
    }
    let joined = texts.join("\n");
    let (notice, rest) = cut_original(&joined);
    if doc.original.message_id.is_none()
        && let Some(rest) = rest
    {
        doc.original = original_from_text(rest);
    }
    doc.notice = notice.to_owned();
    doc
}

fn visit(
    part: &MessagePart<'_>,
    doc: &mut Document,
    texts: &mut Vec<String>,
    html: &mut Vec<String>,
) {
    let (ctype, sub) = part
        .content_type()
        .map(|ct| {
            (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase(),
            )
        })
        .unwrap_or_else(|| ("text".into(), "plain".into()));
    match (&part.body, ctype.as_str(), sub.as_str()) {
        (PartType::Message(inner), _, _) if doc.original.message_id.is_none() => {
            doc.original = original_from_message(inner);
        }
        (PartType::Message(_), _, _) => {}
        (_, "message" | "text", "delivery-status" | "global-delivery-status") => {
            doc.dsn.get_or_insert_with(|| lossy(part.contents()));
        }
        (_, "message", "feedback-report") => {
            doc.feedback.get_or_insert_with(|| lossy(part.contents()));
        }
        (_, "text", "rfc822-headers") | (_, "message", "rfc822-headers") => {
            doc.original = original_from_text(&lossy(part.contents()));
        }
        (PartType::Text(t), _, _) => texts.push(t.to_string()),
        // Bounce webhooks (ESP event payloads) mailed on as they came.
        (PartType::Binary(b), "application", "json") => texts.push(lossy(b)),
        (PartType::Html(t), _, _) => html.push(t.to_string()),
        _ => {}
    }
}

/// The messages attached at the top level (`message/rfc822` parts), at most 4.
pub(crate) fn attached_messages<'a>(msg: &'a Message<'a>) -> impl Iterator<Item = &'a Message<'a>> {
    msg.parts
        .iter()
        .take(64)
        .filter_map(|p| match &p.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        })
        .take(4)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(256 * 1024)]).into_owned()
}

fn first_address(a: Option<&mail_parser::Address<'_>>) -> String {
    a.and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn all_addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .take(50)
            .map(str::to_ascii_lowercase)
            .collect()
    })
    .unwrap_or_default()
}

fn original_from_message(m: &Message<'_>) -> Original {
    Original {
        message_id: m.message_id().map(str::to_owned),
        from: Some(first_address(m.from())).filter(|s| !s.is_empty()),
        to: all_addresses(m.to()),
    }
}

/// The original headers quoted as text (text/rfc822-headers or after a "copy of the message"
/// line): parsed as a header block.
fn original_from_text(text: &str) -> Original {
    let start = text.find(|c: char| !c.is_whitespace()).unwrap_or(0);
    let text = &text[start..];
    PARSER
        .parse_headers(text.as_bytes())
        .map(|m| original_from_message(&m))
        .unwrap_or_default()
}

/// Lines that introduce the returned message in single-part notices (Exim, qmail, Yahoo,
/// Sendmail, DragonFly, appliances). Everything from there on is the original, not the notice.
const ORIGINAL_MARKERS: &[&str] = &[
    "------ this is a copy of the message",
    "------ this is a copy of your message",
    "a copy of the original message",
    "--- below this line is a copy of the message",
    "original message follows",
    "----- original message",
    "------ original message",
    "-------original message",
    "--- original message",
    "message headers follow",
    "included is a copy of the message header",
    "unsent message follows",
    "content-type: message/rfc822",
    "original message headers",
    "the header of the original message",
    "below is a copy of the original message",
    "the original message headers",
    "--- the original message",
    "------ failed message",
    "----- message header follows",
    "------------------ original message",
    "original message header",
    "(以下、元のメール)",
    "--- original mail follows",
];

static MARKERS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build(ORIGINAL_MARKERS)
        .expect("marker table is valid")
});

/// Splits text into (notice, returned original): at the line of the first marker, or where
/// a header block (`Received:` / `Return-Path:` after a blank line) starts.
pub(crate) fn cut_original(text: &str) -> (&str, Option<&str>) {
    let lower = text.to_ascii_lowercase();
    let marker = MARKERS.find(&lower).map(|m| m.start());
    let header = [
        "\n\nreceived: ",
        "\n\nreturn-path: ",
        "\n\r\nreceived: ",
        "\n\r\nreturn-path: ",
    ]
    .iter()
    .filter_map(|h| lower.find(h).map(|i| i + h.find('r').unwrap_or(0)))
    .min();
    let Some(at) = [marker, header].into_iter().flatten().min() else {
        return (text, None);
    };
    let start = lower[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = lower[at..].find('\n').map_or(text.len(), |i| at + i + 1);
    if marker == Some(at) {
        (&text[..start], Some(&text[end..]))
    } else {
        (&text[..start], Some(&text[start..]))
    }
}

/// Replaces markup with spaces, decodes the few entities bounce notices use.
fn strip_html(h: &str) -> String {
    let mut out = String::with_capacity(h.len());
    let mut in_tag = false;
    for c in h.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_cut_before_the_returned_message() {
        let t = "failed:\n  a@b.test\n\n------ This is a copy of the message, including all the headers. ------\nFrom: x@y\n";
        let (notice, rest) = cut_original(t);
        assert_eq!(notice, "failed:\n  a@b.test\n\n");
        assert_eq!(rest, Some("From: x@y\n"));
        let (notice, rest) = cut_original("reason\n\nReceived: from x\nFrom: y\n");
        assert_eq!(notice, "reason\n\n");
        assert_eq!(rest, Some("Received: from x\nFrom: y\n"));
        assert_eq!(cut_original("no original here").1, None);
    }
}
