//! Rule ids: every piece of evidence the classifier can decide on has a name, so a run can
//! say which rule decided each recipient and which rules matched at all, and a measurement
//! can switch rules off (the leave-one-family-out scorer in `tests/bounce_corpus.rs` turns
//! off every rule that only one MTA family ever matches, to see how that family would fare
//! if it had never been seen).
//!
//! Rules come in two kinds. Standard rules read what RFCs and the product's own category
//! code table define (the RFC 3463 status table, RFC 5321 reply codes, the SMTP stage a
//! refusal came at, the code table): they were written for no family. Learned rules (diagnostic phrases, provider code ranges, generic wordings) were
//! written from real mail and are what can overfit.

use std::collections::HashSet;
use std::fmt;

use super::category::Reason;

/// One rule of the classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// A row of the RFC 3463 subject/detail table, e.g. `X.2.2` (see `codes`).
    Status(&'static str),
    /// A row of the product's category code table (`code_table`): reply code and status.
    CodeTable(u16, &'static str),
    /// A code range one provider documents, e.g. Microsoft's `X.7.650-699`.
    ProviderStatus(&'static str),
    /// A diagnostic phrase of the phrase tables, with the reason its row names.
    Phrase(Reason, &'static str),
    /// A concept: a subject word and a predicate near it (`phrases::concepts`).
    Concept(&'static str),
    /// A generic wording that only says on which side the refusal happened.
    Fallback(&'static str),
    /// A bare SMTP reply code (RFC 5321 §4.2.3).
    Reply(u16),
    /// The SMTP stage the refusal came at (after MAIL FROM, at the greeting, after DATA).
    Stage(&'static str),
    /// Nothing spoke: `Recipient Error` by default.
    Nothing,
}

impl RuleId {
    /// Standard rules come from RFCs, not from any MTA family's samples.
    pub fn is_standard(&self) -> bool {
        matches!(
            self,
            RuleId::Status(_)
                | RuleId::CodeTable(..)
                | RuleId::Reply(_)
                | RuleId::Stage(_)
                | RuleId::Nothing
        )
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleId::Status(s) => write!(f, "status:{s}"),
            RuleId::CodeTable(r, s) => write!(f, "code-table:{r} {s}"),
            RuleId::ProviderStatus(s) => write!(f, "provider-status:{s}"),
            RuleId::Phrase(r, p) => write!(f, "phrase:{}:{p}", r.as_str()),
            RuleId::Concept(c) => write!(f, "concept:{c}"),
            RuleId::Fallback(p) => write!(f, "fallback:{p}"),
            RuleId::Reply(c) => write!(f, "reply:{c}"),
            RuleId::Stage(s) => write!(f, "stage:{s}"),
            RuleId::Nothing => f.write_str("nothing"),
        }
    }
}

/// Which rules may decide. The default set has every rule on.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    off: HashSet<RuleId>,
}

impl Rules {
    /// Every rule on.
    pub fn all() -> Rules {
        Rules::default()
    }

    /// Every rule on except `off`.
    pub fn without(off: impl IntoIterator<Item = RuleId>) -> Rules {
        Rules {
            off: off.into_iter().collect(),
        }
    }

    pub fn is_on(&self, rule: RuleId) -> bool {
        self.off.is_empty() || !self.off.contains(&rule)
    }
}

/// How one failed recipient was classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub address: String,
    /// The rule whose reason was taken.
    pub decided: RuleId,
    /// Every enabled rule that matched the recipient's evidence, deciding or not.
    pub matched: Vec<RuleId>,
}

/// What one classification run carries along: the rules in force and, when tracing, every
/// rule that matched. Without tracing nothing is recorded (the hot path stays allocation-free).
pub(crate) struct Probe<'a> {
    pub rules: &'a Rules,
    pub matched: Option<Vec<RuleId>>,
}

impl<'a> Probe<'a> {
    pub fn new(rules: &'a Rules, trace: bool) -> Probe<'a> {
        Probe {
            rules,
            matched: trace.then(Vec::new),
        }
    }

    /// Whether `rule` may decide; records it as matched when it may.
    pub fn hit(&mut self, rule: RuleId) -> bool {
        let on = self.rules.is_on(rule);
        if on
            && let Some(m) = &mut self.matched
            && !m.contains(&rule)
        {
            m.push(rule);
        }
        on
    }
}
