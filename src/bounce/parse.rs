//! `bounce::parse`: raw message → `BounceReport`. Puts the pieces together: the report
//! kind, the recipients (RFC 3464 fields first, notice text second), their codes and
//! classification.

use mail_parser::MessageParser;

use super::category::DeliveryKind;
use super::classify::{Classification, reason_from_texts, sender_stage};
use super::document::{self, Document};
use super::heuristics::{self, TextRecipient};
use super::rfc3464::{self, DsnRecipient};
use super::{BounceReport, Provider, RecipientResult, ReportKind, arf, codes, provider, rfc3834};

/// Larger inputs are cut: bounces are small, and the notice is at the start.
const MAX_INPUT: usize = 2 * 1024 * 1024;
/// Diagnostics are reported up to this many bytes.
const MAX_DIAGNOSTIC: usize = 1000;

/// Parses and classifies a DSN, non-delivery notice, feedback report or auto-reply.
/// Never panics; anything unreadable is `NotBounce`.
pub fn parse(raw: &[u8]) -> BounceReport {
    let raw = &raw[..raw.len().min(MAX_INPUT)];
    let Some(msg) = MessageParser::new().parse(raw) else {
        return empty(ReportKind::NotBounce);
    };
    let doc = document::build(&msg);
    assemble(&doc)
}

fn empty(kind: ReportKind) -> BounceReport {
    BounceReport {
        is_bounce: false,
        kind,
        recipients: Vec::new(),
        provider: Provider::Other,
        reporting_mta: None,
        envid: None,
        original_message_id: None,
        feedback_type: None,
    }
}

fn assemble(doc: &Document) -> BounceReport {
    let mut report = empty(ReportKind::NotBounce);
    report.original_message_id = doc.original.message_id.clone();
    if let Some(fb) = doc.feedback.as_deref().filter(|_| doc.dsn.is_none()) {
        report.kind = ReportKind::Complaint;
        report.feedback_type = arf::feedback_type(fb);
        return report;
    }
    let dsn_text = doc.dsn.as_deref().or_else(|| quoted_dsn(&doc.notice));
    let dsn = dsn_text.map(rfc3464::parse).unwrap_or_default();
    report.reporting_mta = dsn.reporting_mta.clone();
    report.envid = dsn.envid.clone().or_else(|| doc.header("x-original-envelope-id").map(str::to_owned));
    let text = heuristics::scan(doc);
    let failed_dsn = dsn.recipients.iter().any(|r| !is_success(r.action.as_deref()));
    if !dsn.recipients.is_empty() && !failed_dsn {
        report.kind = ReportKind::DeliveryNotice;
        report.recipients = dsn.recipients.iter().map(|r| from_dsn(r, &text, doc)).collect();
        return report;
    }
    if !failed_dsn && !rfc3834::looks_like_bounce(doc) {
        if rfc3834::is_auto_reply(doc) {
            report.kind = ReportKind::AutoReply;
        }
        return report;
    }
    report.kind = ReportKind::Bounce;
    report.is_bounce = true;
    report.recipients = if failed_dsn {
        dsn.recipients.iter().map(|r| from_dsn(r, &text, doc)).collect()
    } else if !text.is_empty() {
        text.iter().map(|t| from_text(t, doc)).collect()
    } else {
        let address = doc.original.to.first().cloned().unwrap_or_default();
        vec![from_text(&TextRecipient { address, diagnostic: String::new() }, doc)]
    };
    report.provider = report.first_failed().map_or(Provider::Other, |r| r.provider);
    report
}

/// Notices that quote the RFC 3464 fields in their text instead of a separate part.
fn quoted_dsn(notice: &str) -> Option<&str> {
    let lower = notice.to_ascii_lowercase();
    let at = lower.find("final-recipient:").or_else(|| lower.find("original-recipient:"))?;
    let start = lower[..at].rfind("\n\n").map_or(0, |i| i + 1);
    notice.get(start..)
}

fn is_success(action: Option<&str>) -> bool {
    matches!(action, Some(a) if a.starts_with("delivered")
        || a.starts_with("relayed")
        || a.starts_with("expanded")
        // Postfix `sendmail -bv` address verification reports.
        || a.starts_with("deliverable"))
}

fn from_dsn(r: &DsnRecipient, text: &[TextRecipient], doc: &Document) -> RecipientResult {
    let address = r.address().unwrap_or("").to_ascii_lowercase();
    let block = text
        .iter()
        .find(|t| t.address == address)
        .or_else(|| (text.len() == 1).then(|| &text[0]))
        .map_or("", |t| t.diagnostic.as_str());
    let diag = r.diagnostic.as_deref().unwrap_or("");
    let mut out = evaluate(&address, r.status.as_deref(), diag, block, doc);
    out.original_recipient = r.original_recipient.clone();
    out.action = r.action.clone();
    out.remote_mta = r.remote_mta.clone();
    out.last_attempt = r.last_attempt.clone();
    if is_success(r.action.as_deref()) {
        out.category = None;
        out.reason = None;
        out.kind = None;
        out.hard = false;
    } else if let Some(a) = &r.action {
        let kind = if a.starts_with("delayed") { DeliveryKind::Transient } else { DeliveryKind::Permanent };
        out.kind = Some(kind);
    }
    let hosts: Vec<&str> = out.remote_mta.as_deref().into_iter().collect();
    out.provider = provider::detect_provider(Some(&address), &hosts, &out.diagnostic);
    out
}

fn from_text(t: &TextRecipient, doc: &Document) -> RecipientResult {
    evaluate(&t.address, None, "", &t.diagnostic, doc)
}

/// Codes and classification for one recipient: the DSN diagnostic first, then the notice's
/// block about the recipient, then the whole notice.
fn evaluate(address: &str, status: Option<&str>, diag: &str, block: &str, doc: &Document) -> RecipientResult {
    let sources = [diag, block, doc.notice.as_str()];
    let own = if diag.trim().is_empty() && block.trim().is_empty() { 3 } else { 2 };
    let status = pick_status(status, &sources[..own]);
    let reply_code = sources.iter().find_map(|s| codes::find_reply_code(s));
    let (reason, weak) = reason_from_texts(reply_code, status.as_deref(), &sources);
    let reason = sender_stage(reason, weak, &format!("{diag}\n{block}"));
    let transient = status.as_deref().map_or(reply_code.is_some_and(|c| c < 500), |s| s.starts_with('4'));
    let kind = if transient { DeliveryKind::Transient } else { DeliveryKind::Permanent };
    let c = Classification::from_reason(reason, kind);
    let shown = if diag.trim().is_empty() { block } else { diag };
    RecipientResult {
        address: address.to_owned(),
        original_recipient: None,
        action: None,
        status,
        reply_code,
        category: Some(c.category),
        reason: Some(c.reason),
        hard: c.hard,
        kind: Some(c.kind),
        diagnostic: truncate(&normalize_keep_case(shown)),
        remote_mta: None,
        last_attempt: None,
        provider: provider::detect_provider(Some(address), &[], shown),
    }
}

/// The DSN Status unless it is generic (X.0.0) and the text names a precise code.
fn pick_status(status: Option<&str>, sources: &[&str]) -> Option<String> {
    let from_text = sources.iter().find_map(|s| codes::find_status(s));
    match (status, from_text) {
        (Some(s), Some(t)) if s.ends_with(".0.0") && t.as_bytes().first() == s.as_bytes().first() => {
            Some(t.to_owned())
        }
        (Some(s), _) => Some(s.to_owned()),
        (None, t) => t.map(str::to_owned),
    }
}

fn normalize_keep_case(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_DIAGNOSTIC {
        return s.to_owned();
    }
    let mut end = MAX_DIAGNOSTIC;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
