//! Diagnostic phrase tables: rules as data. Each row is a reason and the lower-case phrases
//! that name it in the replies and notices of real MTAs (Postfix, Exim, Sendmail, qmail,
//! Exchange/M365, Gmail, Yahoo, Domino, Courier, appliances and ESPs). Rows are tried in
//! order, so a more specific reason comes before a broader one ("sender address rejected:
//! domain not found" is the sender's problem, not an unknown recipient host).

mod address;
mod concepts;
mod policy;
mod system;

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use super::category::Reason;
use super::rules::{Probe, RuleId, Rules};

/// The phrase groups in the order they are tried.
const GROUPS: &[&[(Reason, &[&str])]] = &[
    policy::STRONG,
    address::MAILBOX,
    address::RECIPIENT,
    policy::POLICY,
    system::SYSTEM,
];

/// The first reason whose phrase occurs in `lower` (lower-cased, whitespace collapsed text).
pub fn match_reason(lower: &str) -> Option<Reason> {
    explain(lower).map(|(r, _)| r)
}

/// All phrases of all rows in one Aho-Corasick automaton: one pass over the text finds every
/// phrase, the row with the lowest index (highest priority) wins. Built once; immutable.
struct Matcher {
    automaton: AhoCorasick,
    /// Per pattern id: (row index, reason, phrase).
    patterns: Vec<(usize, Reason, &'static str)>,
    /// Phrases with a `*` wildcard, checked one by one: (row index, reason, phrase).
    wildcards: Vec<(usize, Reason, &'static str)>,
    /// Rows below this index belong to the strong group.
    strong_rows: usize,
}

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let mut patterns = Vec::new();
    let mut wildcards = Vec::new();
    let rows = GROUPS.iter().flat_map(|g| g.iter()).enumerate();
    for (row, (reason, phrases)) in rows {
        for p in phrases.iter() {
            let list = if p.contains('*') {
                &mut wildcards
            } else {
                &mut patterns
            };
            list.push((row, *reason, *p));
        }
    }
    let automaton = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns.iter().map(|(_, _, p)| *p))
        .expect("phrase tables are valid Aho-Corasick patterns");
    Matcher {
        automaton,
        patterns,
        wildcards,
        strong_rows: GROUPS[0].len(),
    }
});

/// The first matching reason and the phrase that matched it.
pub fn explain(lower: &str) -> Option<(Reason, &'static str)> {
    let (reason, rule) = explain_with(lower, &mut Probe::new(&Rules::all(), false))?;
    match rule {
        RuleId::Phrase(_, p) | RuleId::Concept(p) => Some((reason, p)),
        _ => None,
    }
}

/// The first matching reason among the rules `probe` lets decide, and its rule.
pub(crate) fn explain_with(lower: &str, probe: &mut Probe<'_>) -> Option<(Reason, RuleId)> {
    let m = &*MATCHER;
    let tracing = probe.matched.is_some();
    let mut best: Option<(usize, Reason, &'static str)> = None;
    for hit in m.automaton.find_overlapping_iter(lower) {
        let cand = m.patterns[hit.pattern().as_usize()];
        if probe.hit(RuleId::Phrase(cand.1, cand.2)) && best.is_none_or(|b| cand.0 < b.0) {
            best = Some(cand);
        }
    }
    for w in &m.wildcards {
        let could_win = best.is_none_or(|b| w.0 < b.0);
        // A trace records every rule that matches, not only the winner.
        if !(could_win || tracing) || !contains_phrase(lower, w.2) {
            continue;
        }
        if probe.hit(RuleId::Phrase(w.1, w.2)) && could_win {
            best = Some(*w);
        }
    }
    let found = best.map(|(_, r, p)| (r, RuleId::Phrase(r, p)));
    match best {
        Some((row, ..)) if row < m.strong_rows => found,
        // The same idea as the "domain-unknown" concept, with a host name as the subject
        // word: one rule id, so it counts as the concept it is.
        _ => domain_does_not_exist(lower)
            .filter(|_| probe.hit(RuleId::Concept("domain-unknown")))
            .map(|r| (r, RuleId::Concept("domain-unknown")))
            .or(found),
    }
}

/// "`example.com` does not exist": the subject is a host name, so the domain is unknown
/// (not the user, which the generic "does not exist" would say).
fn domain_does_not_exist(lower: &str) -> Option<Reason> {
    const TAIL: &str = " does not exist";
    let at = lower.find(TAIL)?;
    let word = lower[..at]
        .rsplit(' ')
        .next()?
        .trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']'));
    let host_like = word.contains('.')
        && !word.contains('@')
        && word
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()));
    host_like.then_some(Reason::HostUnknown)
}

/// The first concept (subject word + predicate) `lower` expresses among the rules `probe`
/// lets decide.
pub(crate) fn concept_with(lower: &str, probe: &mut Probe<'_>) -> Option<(Reason, RuleId)> {
    let mut out = None;
    for (id, reason) in concepts::matches(lower) {
        if probe.hit(RuleId::Concept(id)) {
            out = out.or(Some((reason, RuleId::Concept(id))));
            if probe.matched.is_none() {
                break;
            }
        }
    }
    out
}

/// The reason a generic wording suggests (tried only when codes say nothing either).
pub(crate) fn match_fallback_with(lower: &str, probe: &mut Probe<'_>) -> Option<(Reason, RuleId)> {
    let mut out = None;
    for (reason, phrases) in address::FALLBACK {
        for p in phrases.iter() {
            if contains_phrase(lower, p) && probe.hit(RuleId::Fallback(p)) {
                out = out.or(Some((*reason, RuleId::Fallback(p))));
                if probe.matched.is_none() {
                    return out;
                }
            }
        }
    }
    out
}

/// Longest gap a `*` in a phrase bridges ("host * not found").
const MAX_GAP: usize = 80;

/// Substring match; `*` in the phrase stands for up to `MAX_GAP` bytes of anything.
fn contains_phrase(hay: &str, phrase: &str) -> bool {
    let Some((head, tail)) = phrase.split_once('*') else {
        return hay.contains(phrase);
    };
    let mut from = 0;
    while let Some(i) = hay.get(from..).and_then(|h| h.find(head)) {
        let after = from + i + head.len();
        let window_end = (after + MAX_GAP + tail.len()).min(hay.len());
        let window = hay
            .get(after..window_end)
            .unwrap_or_else(|| hay.get(after..).unwrap_or(""));
        if contains_phrase(window, tail) {
            return true;
        }
        from = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_bridge_short_gaps_only() {
        assert!(contains_phrase(
            "host mx.example.test not found",
            "host * not found"
        ));
        assert!(!contains_phrase(
            &format!("host {} not found", "x".repeat(200)),
            "host * not found"
        ));
    }

    #[test]
    fn a_domain_that_does_not_exist_is_an_unknown_host() {
        assert_eq!(
            match_reason("553 neko.example.com does not exist"),
            Some(Reason::HostUnknown)
        );
        assert_eq!(
            match_reason("553 <a@neko.example.com> does not exist"),
            Some(Reason::UserUnknown)
        );
    }

    #[test]
    fn a_recipient_refused_in_any_wording_is_a_weak_unknown_user() {
        let fallback =
            |t: &str| match_fallback_with(t, &mut Probe::new(&Rules::all(), false)).map(|(r, _)| r);
        for text in [
            "recipient address rejected: see the admin",
            "each of the following recipients was rejected by a remote mail server.",
            "recipient rejected",
        ] {
            assert_eq!(fallback(text), Some(Reason::UserUnknown), "{text}");
        }
        assert_eq!(fallback("the sender was rejected"), None);
    }

    #[test]
    fn specific_reasons_win_over_broad_ones() {
        assert_eq!(
            match_reason("procmail: no such user"),
            Some(Reason::MailerError)
        );
        assert_eq!(
            match_reason("sender address rejected: domain not found"),
            Some(Reason::Rejected)
        );
        assert_eq!(
            match_reason("message expired, connection refused"),
            Some(Reason::Expired)
        );
    }
}
