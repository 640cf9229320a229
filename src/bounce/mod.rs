//! ⑥ Bounce processing: a DSN or non-delivery notice (raw bytes, as received at
//! `bounce+TOKEN@`) → `BounceReport` (per-recipient category, status, reply code, provider).
//!
//! Data path: `document` (MIME walk with mail-parser) → `rfc3464` (delivery-status fields)
//! or `heuristics` (non-standard notices of Exim, qmail, Sendmail, Exchange, ...) → `classify`
//! (RFC 3463 code table, phrase tables, provider code ranges; shared with outbound delivery
//! through `classify_reply`). Every rule has an id (`rules`): `parse_traced` tells which
//! rule decided each recipient, and can run with rules switched off.
//! `arf` and `rfc3834` tell complaints and auto-replies apart: they are no bounces.
//!
//! Invariants: `parse` never panics and does bounded work on any input (input, parts,
//! recipients and texts are capped); categories are exactly the SPEC names.

mod arf;
mod category;
mod classify;
mod code_table;
mod codes;
mod document;
mod heuristics;
mod normalize;
mod parse;
mod phrases;
mod rfc3463;
mod rfc3464;
mod rfc3834;
pub mod rules;
mod stage;

pub use category::{Category, DeliveryKind, Reason};
pub use classify::{Classification, classify_reply, classify_reply_with};
pub use codes::{find_reply_code, find_status};
pub use parse::{parse, parse_traced};
pub(crate) use rfc3834::may_be_auto_reply;
pub use rules::{RuleId, Rules, Trace};

/// Which phrase-table row decides `text` (for rule debugging and the corpus scorer).
#[doc(hidden)]
pub fn explain(text: &str) -> Option<(Reason, &'static str)> {
    phrases::explain(&normalize::normalize(text))
}

use serde::Serialize;

use crate::providers::Provider;

/// What kind of automatic message a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A non-delivery report (failed or delayed recipients).
    Bounce,
    /// An RFC 5965 feedback (abuse) report.
    Complaint,
    /// An RFC 3834 auto-reply (vacation, out of office).
    AutoReply,
    /// A success DSN (`Action: delivered`, relayed, expanded).
    DeliveryNotice,
    /// Ordinary mail.
    NotBounce,
}

/// The parsed and classified report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BounceReport {
    pub is_bounce: bool,
    pub kind: ReportKind,
    /// Failed (and, for delivery notices, delivered) recipients in report order.
    pub recipients: Vec<RecipientResult>,
    /// Provider of the first failed recipient.
    pub provider: Provider,
    /// RFC 3464 Reporting-MTA.
    pub reporting_mta: Option<String>,
    /// RFC 3461 ENVID echoed as Original-Envelope-Id.
    pub envid: Option<String>,
    /// Message-ID of the returned original message, when the report includes it.
    pub original_message_id: Option<String>,
    /// RFC 5965 Feedback-Type of a complaint.
    pub feedback_type: Option<String>,
}

/// One recipient of a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecipientResult {
    pub address: String,
    /// RFC 3461 ORCPT (Original-Recipient), when given.
    pub original_recipient: Option<String>,
    /// RFC 3464 Action: failed, delayed, delivered, relayed, expanded.
    pub action: Option<String>,
    /// Enhanced status code (RFC 3463), e.g. "5.1.1".
    pub status: Option<String>,
    /// SMTP reply code, e.g. 550.
    pub reply_code: Option<u16>,
    /// `None` for recipients that did not fail.
    pub category: Option<Category>,
    pub reason: Option<Reason>,
    /// See [`Classification::certain`]: what suppression may act on.
    pub certain: bool,
    /// See [`Classification::hard`].
    pub hard: bool,
    pub kind: Option<DeliveryKind>,
    /// The receiver's words (Diagnostic-Code or the notice's lines about this recipient).
    pub diagnostic: String,
    pub remote_mta: Option<String>,
    pub last_attempt: Option<String>,
    pub provider: Provider,
}

impl BounceReport {
    /// The first failed recipient (the one the top-level CLI fields describe).
    pub fn first_failed(&self) -> Option<&RecipientResult> {
        self.recipients.iter().find(|r| r.category.is_some())
    }
}
