//! `bounce::parse`: raw message → `BounceReport`. Puts the pieces together: the report
//! kind, the recipients (RFC 3464 fields first, notice text second), their codes and
//! classification.

use std::cell::OnceCell;

use super::category::DeliveryKind;
use super::classify::{Classification, Text, certain, reason_from_texts, transient_class};
use super::document::{self, Document};
use super::heuristics::ses::SesNotice;
use super::heuristics::{self, TextRecipient};
use super::rfc3464::{self, DsnMessage, DsnRecipient};
use super::rules::{Probe, Rules, Trace};
use super::stage::{sender_named, sender_stage};
use super::{BounceReport, Provider, RecipientResult, ReportKind, arf, codes, rfc3834};
use crate::providers::detect_provider;

/// Larger inputs are cut: bounces are small, and the notice is at the start.
const MAX_INPUT: usize = 2 * 1024 * 1024;
/// Diagnostics are reported up to this many bytes.
const MAX_DIAGNOSTIC: usize = 1000;

/// Parses and classifies a DSN, non-delivery notice, feedback report or auto-reply.
/// Never panics; anything unreadable is `NotBounce`.
pub fn parse(raw: &[u8]) -> BounceReport {
    run(raw, &mut Ctx::new(&Rules::all(), false))
}

/// [`parse`] with some classification rules switched off, and for each failed recipient
/// the rule that decided and every rule that matched (rule debugging, the corpus scorer).
pub fn parse_traced(raw: &[u8], rules: &Rules) -> (BounceReport, Vec<Trace>) {
    let mut ctx = Ctx::new(rules, true);
    let report = run(raw, &mut ctx);
    let traces = if report.is_bounce {
        ctx.traces
    } else {
        Vec::new()
    };
    (report, traces)
}

/// The rules in force and the traces collected during one parse.
struct Ctx<'a> {
    rules: &'a Rules,
    trace: bool,
    traces: Vec<Trace>,
}

impl<'a> Ctx<'a> {
    fn new(rules: &'a Rules, trace: bool) -> Ctx<'a> {
        Ctx {
            rules,
            trace,
            traces: Vec::new(),
        }
    }
}

fn run(raw: &[u8], ctx: &mut Ctx<'_>) -> BounceReport {
    let raw = &raw[..raw.len().min(MAX_INPUT)];
    let Some(msg) = document::PARSER.parse(raw) else {
        return empty(ReportKind::NotBounce);
    };
    let doc = document::build(&msg);
    let report = assemble(&doc, ctx);
    if report.kind != ReportKind::NotBounce || !doc.auto_submitted() {
        return report;
    }
    // A mailbox rule or a system forwarding a bounce as an attachment (RFC 3834
    // `Auto-Submitted: auto-forwarded`): the attached notice is the report. A person's
    // forward (no Auto-Submitted) stays ordinary mail.
    document::attached_messages(&msg)
        .map(|inner| assemble(&document::build(inner), ctx))
        .find(|r| r.is_bounce)
        .unwrap_or(report)
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

fn assemble(doc: &Document, ctx: &mut Ctx<'_>) -> BounceReport {
    let mut report = empty(ReportKind::NotBounce);
    report.original_message_id = doc.original.message_id.clone();
    let Some(dsn) = delivery_fields(doc, &mut report) else {
        return report;
    };
    report.reporting_mta = dsn.reporting_mta.clone();
    report.envid = dsn
        .envid
        .clone()
        .or_else(|| doc.header("x-original-envelope-id").map(str::to_owned));
    let failed_dsn = dsn
        .recipients
        .iter()
        .any(|r| !is_success(r.action.as_deref()));
    if dsn.recipients.is_empty() && !rfc3834::looks_like_bounce(doc) {
        // Ordinary mail (every message an ERP route delivers is asked whether it is an
        // auto-reply): decided before the notice's text is scanned for addresses.
        if rfc3834::is_auto_reply(doc) {
            report.kind = ReportKind::AutoReply;
        }
        return report;
    }
    let text = heuristics::scan(doc);
    if !dsn.recipients.is_empty() && !failed_dsn {
        report.kind = ReportKind::DeliveryNotice;
        for r in &dsn.recipients {
            report.recipients.push(from_dsn(r, &text, doc, false, ctx));
        }
        return report;
    }
    report.kind = ReportKind::Bounce;
    report.is_bounce = true;
    report.recipients = failed_recipients(&dsn, failed_dsn, &text, doc, ctx);
    report.provider = report
        .first_failed()
        .map_or(Provider::Other, |r| r.provider);
    report
}

/// The RFC 3464 fields (from the delivery-status part, an SES notification or fields quoted
/// in the notice). Complaints (ARF, SES) are completed in `report` and give `None`.
fn delivery_fields(doc: &Document, report: &mut BounceReport) -> Option<DsnMessage> {
    let ses = heuristics::ses::parse(&doc.notice);
    if let Some(fb) = doc.feedback.as_deref().filter(|_| doc.dsn.is_none()) {
        report.kind = ReportKind::Complaint;
        report.feedback_type = arf::feedback_type(fb);
        report
            .recipients
            .extend(arf::complainant(fb).map(complainant));
        return None;
    }
    match ses {
        Some(SesNotice::Complaint(feedback_type, who)) => {
            report.kind = ReportKind::Complaint;
            report.feedback_type = feedback_type;
            report.recipients = who.into_iter().map(complainant).collect();
            None
        }
        Some(SesNotice::Bounce(m) | SesNotice::Delivery(m)) => Some(m),
        None => {
            // DSN fields quoted in the text count only in a notice: a list digest or a
            // person's mail quoting `Action: failed` is no bounce.
            let dsn_text = doc
                .dsn
                .as_deref()
                .or_else(|| quoted_dsn(&doc.notice).filter(|_| rfc3834::looks_like_bounce(doc)));
            Some(dsn_text.map(rfc3464::parse).unwrap_or_default())
        }
    }
}

/// Failed recipients: the DSN's when it lists failures, else those found in the notice,
/// else the returned message's first To with the whole notice as its diagnostic.
fn failed_recipients(
    dsn: &DsnMessage,
    failed_dsn: bool,
    text: &[TextRecipient],
    doc: &Document,
    ctx: &mut Ctx<'_>,
) -> Vec<RecipientResult> {
    if failed_dsn {
        let single = dsn.recipients.len() == 1;
        return dsn
            .recipients
            .iter()
            .map(|r| from_dsn(r, text, doc, single, ctx))
            .collect();
    }
    if !text.is_empty() {
        return text
            .iter()
            .map(|t| from_text(t, doc, text.len() == 1, ctx))
            .collect();
    }
    let address = doc.original.to.first().cloned().unwrap_or_default();
    let only = TextRecipient {
        address,
        diagnostic: String::new(),
    };
    vec![from_text(&only, doc, true, ctx)]
}

/// The recipient who complained (RFC 5965 Original-Rcpt-To): no failure, so no category.
fn complainant(address: String) -> RecipientResult {
    RecipientResult {
        provider: detect_provider(Some(&address), &[], ""),
        address,
        original_recipient: None,
        action: None,
        status: None,
        reply_code: None,
        category: None,
        reason: None,
        certain: false,
        hard: false,
        kind: None,
        diagnostic: String::new(),
        remote_mta: None,
        last_attempt: None,
    }
}

/// Notices that quote the RFC 3464 fields in their text instead of a separate part.
fn quoted_dsn(notice: &str) -> Option<&str> {
    let lower = notice.to_ascii_lowercase();
    let at = lower
        .find("final-recipient:")
        .or_else(|| lower.find("original-recipient:"))?;
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

fn from_dsn(
    r: &DsnRecipient,
    text: &[TextRecipient],
    doc: &Document,
    single: bool,
    ctx: &mut Ctx<'_>,
) -> RecipientResult {
    let address = r.address().unwrap_or("").to_ascii_lowercase();
    let block = text
        .iter()
        .find(|t| t.address == address)
        .or_else(|| (text.len() == 1).then(|| &text[0]))
        .map_or("", |t| t.diagnostic.as_str());
    let diag = r.diagnostic.as_deref().unwrap_or("");
    let mut out = evaluate(
        &address,
        r.status.as_deref(),
        [diag, block],
        doc,
        single,
        ctx,
    );
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
        let kind = if a.starts_with("delayed") {
            DeliveryKind::Transient
        } else {
            DeliveryKind::Permanent
        };
        out.kind = Some(kind);
    }
    let hosts: Vec<&str> = out.remote_mta.as_deref().into_iter().collect();
    out.provider = detect_provider(Some(&address), &hosts, &out.diagnostic);
    out
}

fn from_text(
    t: &TextRecipient,
    doc: &Document,
    single: bool,
    ctx: &mut Ctx<'_>,
) -> RecipientResult {
    evaluate(&t.address, None, ["", &t.diagnostic], doc, single, ctx)
}

/// Codes and classification for one recipient: the DSN diagnostic first, then the notice's
/// block about the recipient, then the whole notice (for codes only when the notice is about
/// this one recipient: `single`).
fn evaluate(
    address: &str,
    status: Option<&str>,
    [diag, block]: [&str; 2],
    doc: &Document,
    single: bool,
    ctx: &mut Ctx<'_>,
) -> RecipientResult {
    let own = single || (diag.trim().is_empty() && block.trim().is_empty());
    let status = pick_status(status, [diag, block], own.then(|| doc.notice_status()));
    let reply_code = [diag, block]
        .iter()
        .find_map(|s| codes::find_failure_reply_code(s))
        .or_else(|| doc.notice_reply_code());
    let mut probe = Probe::new(ctx.rules, ctx.trace);
    let (diag_norm, block_norm) = (OnceCell::new(), OnceCell::new());
    let texts = [
        Text::new(diag, &diag_norm),
        Text::new(block, &block_norm),
        Text::new(&doc.notice, doc.notice_normalized()),
    ];
    let verdict = reason_from_texts(reply_code, status.as_deref(), &texts, 2, &mut probe);
    let own_words = format!("{diag}\n{block}");
    let verdict = sender_stage(verdict, &own_words, &mut probe);
    let senders: Vec<&str> = doc
        .to
        .iter()
        .map(String::as_str)
        .chain(doc.original.from.as_deref())
        .collect();
    // The reply's own words: a notice's paragraph starts with the recipient it is about.
    let reply = if diag.trim().is_empty() { block } else { diag };
    let verdict = sender_named(verdict, reply, &senders, address, &mut probe);
    let transient = status
        .as_deref()
        .map_or(reply_code.is_some_and(|c| c < 500), |s| s.starts_with('4'));
    let verdict = transient_class(verdict, transient, status.as_deref(), &mut probe);
    let reason = verdict.reason;
    if let Some(matched) = probe.matched {
        ctx.traces.push(Trace {
            address: address.to_owned(),
            decided: verdict.rule,
            matched,
        });
    }
    let kind = if transient {
        DeliveryKind::Transient
    } else {
        DeliveryKind::Permanent
    };
    let certain = certain(&verdict, status.as_deref());
    let c = Classification::from_reason(reason, kind, certain);
    let shown = if diag.trim().is_empty() { block } else { diag };
    RecipientResult {
        address: address.to_owned(),
        original_recipient: None,
        action: None,
        status,
        reply_code,
        category: Some(c.category),
        reason: Some(c.reason),
        certain: c.certain,
        hard: c.hard,
        kind: Some(c.kind),
        diagnostic: truncate(&normalize_keep_case(shown)),
        remote_mta: None,
        last_attempt: None,
        provider: detect_provider(Some(address), &[], shown),
    }
}

/// The DSN Status unless it is generic (X.0.0) and the text names a precise code. The
/// recipient's own texts first, then the notice's code (`None` when the notice is not about
/// this recipient alone).
fn pick_status(
    status: Option<&str>,
    own: [&str; 2],
    notice: Option<Option<&str>>,
) -> Option<String> {
    let from_text = own
        .iter()
        .find_map(|s| codes::find_failure_status(s))
        .or_else(|| notice.flatten());
    match (status, from_text) {
        (Some(s), Some(t))
            if s.ends_with(".0.0") && t.as_bytes().first() == s.as_bytes().first() =>
        {
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
