//! Concepts: a subject word and a predicate close to it ("recipient … not found", "mailbox
//! … over quota", "sender domain … does not exist"). Where the phrase tables hold one MTA's
//! exact wording, a concept holds the idea every MTA words its own way, so it reads mail
//! from MTAs no table was written for. Tried after the exact phrases of the same text.
//!
//! A predicate counts when it follows the subject within `AFTER` bytes, or stands right
//! before it (`BEFORE`: "unknown user", "invalid recipient"), so words of neighbouring
//! sentences do not pair up. A predicate written with a trailing space is a determiner
//! ("no relaying"): it counts only before the subject, so "relay=none" is no refusal.

mod table;

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::bounce::category::Reason;
use table::CONCEPTS;

/// Most bytes between the end of a subject and a predicate after it.
const AFTER: usize = 40;
/// Most bytes between a predicate and the subject right after it.
const BEFORE: usize = 2;

/// Every subject and predicate of every concept in one automaton.
struct Matcher {
    automaton: AhoCorasick,
    words: Vec<&'static str>,
    /// Bytes of the longest word: bounds where a predicate before a subject can start.
    longest: usize,
}

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let mut words: Vec<&'static str> = Vec::new();
    for (_, _, subjects, preds) in CONCEPTS {
        for w in subjects.iter().chain(preds.iter()) {
            if !words.contains(w) {
                words.push(w);
            }
        }
    }
    let automaton = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .match_kind(MatchKind::Standard)
        .build(&words)
        .expect("concept words are valid patterns");
    let longest = words.iter().map(|w| w.len()).max().unwrap_or(0);
    Matcher {
        automaton,
        words,
        longest,
    }
});

/// Every concept that `lower` expresses, in priority order: (id, reason).
pub(super) fn matches(lower: &str) -> impl Iterator<Item = (&'static str, Reason)> {
    let m = &*MATCHER;
    // (start, end, word) of every word occurrence, overlapping: "mail from" and "from".
    let mut hits: Vec<(usize, usize, &'static str)> = m
        .automaton
        .find_overlapping_iter(lower)
        .map(|h| (h.start(), h.end(), m.words[h.pattern().as_usize()]))
        .collect();
    hits.sort_unstable();
    let longest = m.longest;
    CONCEPTS
        .iter()
        .filter(move |(_, _, subjects, preds)| {
            hits.iter().filter(|h| subjects.contains(&h.2)).any(|s| {
                // Only words starting near the subject can pair with it: a window, not every
                // hit of the text (a hostile text of repeated words made the pairing
                // quadratic: seconds for 55 KB, found by the fuzzer).
                let lo = hits.partition_point(|h| h.0 + BEFORE + longest < s.0);
                let hi = hits.partition_point(|h| h.0 <= s.1 + AFTER);
                hits[lo..hi.max(lo)]
                    .iter()
                    .filter(|h| preds.contains(&h.2))
                    .any(|p| {
                        let after = p.0 >= s.1 && p.0 - s.1 <= AFTER && !p.2.ends_with(' ');
                        let before = p.1 <= s.0 && s.0 - p.1 <= BEFORE;
                        after || before
                    })
            })
        })
        .map(|(id, reason, _, _)| (*id, *reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> Option<Reason> {
        matches(text).next().map(|m| m.1)
    }

    #[test]
    fn concepts_read_wordings_no_table_holds() {
        assert_eq!(
            first("the recipient name is not recognized"),
            Some(Reason::UserUnknown)
        );
        assert_eq!(
            first("sorry, no such mailbox here"),
            Some(Reason::UserUnknown)
        );
        assert_eq!(
            first("quota for this mailbox has been exceeded"),
            Some(Reason::MailboxFull)
        );
        assert_eq!(
            first("sender domain example.test does not exist"),
            Some(Reason::Rejected)
        );
        assert_eq!(
            first("this mailbox has been deactivated"),
            Some(Reason::Suspend)
        );
        assert_eq!(
            first("52 too many recipients in this message"),
            Some(Reason::TooManyConn)
        );
    }

    #[test]
    fn content_refusals_are_policy_blocks_in_any_wording() {
        for text in [
            "550 5.7.1 message rejected due to content restrictions",
            "554 5.7.1 message rejected because of unacceptable content.",
            "your message contents were refused by policy",
        ] {
            assert_eq!(first(text), Some(Reason::PolicyViolation), "{text}");
        }
        assert_eq!(
            first("the domain name (x.example) does not appear to be registered."),
            Some(Reason::HostUnknown)
        );
        assert_eq!(first("对方邮箱空间已满"), Some(Reason::MailboxFull));
    }

    #[test]
    fn concepts_read_sender_side_refusals_across_wordings() {
        assert_eq!(
            first("please use the smtp server of your isp."),
            Some(Reason::Blocked)
        );
        assert_eq!(
            first("we recommend that you contact your internet service provider."),
            Some(Reason::Blocked)
        );
        assert_eq!(
            first("recipient address rejected: no relaying."),
            Some(Reason::NoRelaying)
        );
        assert_eq!(
            first("5.7.1 this system is not configured to relay mail from <a@b.test>"),
            Some(Reason::NoRelaying)
        );
        assert_eq!(first("relay=none, delay=0.2"), None);
        assert_eq!(
            first("connection rate limit exceeded."),
            Some(Reason::TooManyConn)
        );
        assert_eq!(
            first("rate limited due to ip reputation"),
            Some(Reason::BadReputation)
        );
        assert_eq!(
            first("recipient address rejected: delivery not authorized."),
            Some(Reason::SecurityError)
        );
        assert_eq!(
            first("no mx record found for domain=example.org"),
            Some(Reason::NotAccept)
        );
    }

    #[test]
    fn a_text_of_repeated_words_pairs_only_near_words() {
        // Before the pairing was windowed this took seconds (every subject x every predicate).
        let hostile = "user mailbox recipient unknown invalid ".repeat(4000);
        assert_eq!(first(&hostile), Some(Reason::UserUnknown));
        let lonely = format!("user {} unknown; see below. ", "x ".repeat(100));
        assert_eq!(first(&lonely.repeat(200)), None);
    }

    #[test]
    fn words_of_distant_sentences_do_not_pair() {
        let far = format!("the user {} is unknown", "x".repeat(60));
        assert_eq!(first(&far), None);
        assert_eq!(first("invalid ip address"), Some(Reason::Blocked));
    }
}
