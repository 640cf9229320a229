//! Diagnostic phrase tables: rules as data. Each row is a reason and the lower-case phrases
//! that name it in the replies and notices of real MTAs (Postfix, Exim, Sendmail, qmail,
//! Exchange/M365, Gmail, Yahoo, Domino, Courier, appliances and ESPs). Rows are tried in
//! order, so a more specific reason comes before a broader one ("sender address rejected:
//! domain not found" is the sender's problem, not an unknown recipient host).


mod address;
mod policy;
mod system;

use super::category::Reason;

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

/// The first matching reason and the phrase that matched it.
pub fn explain(lower: &str) -> Option<(Reason, &'static str)> {
    let strong = GROUPS[0].iter().find_map(|(reason, phrases)| {
        phrases.iter().find(|p| contains_phrase(lower, p)).map(|p| (*reason, *p))
    });
    strong.or_else(|| domain_does_not_exist(lower)).or_else(|| {
        GROUPS[1..].iter().flat_map(|g| g.iter()).find_map(|(reason, phrases)| {
            phrases.iter().find(|p| contains_phrase(lower, p)).map(|p| (*reason, *p))
        })
    })
}

/// "`example.com` does not exist": the subject is a host name, so the domain is unknown
/// (not the user, which the generic "does not exist" would say).
fn domain_does_not_exist(lower: &str) -> Option<(Reason, &'static str)> {
    const TAIL: &str = " does not exist";
    let at = lower.find(TAIL)?;
    let word = lower[..at].rsplit(' ').next()?.trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']'));
    let host_like = word.contains('.')
        && !word.contains('@')
        && word.rsplit('.').next().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()));
    host_like.then_some((Reason::HostUnknown, "<domain> does not exist"))
}

/// The reason a generic wording suggests (tried only when codes say nothing either).
pub fn match_fallback(lower: &str) -> Option<Reason> {
    address::FALLBACK
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| contains_phrase(lower, p)))
        .map(|(r, _)| *r)
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
        let window = hay.get(after..window_end).unwrap_or_else(|| hay.get(after..).unwrap_or(""));
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
        assert!(contains_phrase("host mx.example.test not found", "host * not found"));
        assert!(!contains_phrase(&format!("host {} not found", "x".repeat(200)), "host * not found"));
    }

    #[test]
    fn a_domain_that_does_not_exist_is_an_unknown_host() {
        assert_eq!(match_reason("553 neko.example.com does not exist"), Some(Reason::HostUnknown));
        assert_eq!(match_reason("553 <a@neko.example.com> does not exist"), Some(Reason::UserUnknown));
    }

    #[test]
    fn specific_reasons_win_over_broad_ones() {
        assert_eq!(match_reason("procmail: no such user"), Some(Reason::MailerError));
        assert_eq!(match_reason("sender address rejected: domain not found"), Some(Reason::Rejected));
        assert_eq!(match_reason("message expired, connection refused"), Some(Reason::Expired));
    }
}
