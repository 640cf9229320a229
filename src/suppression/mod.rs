//! The suppression list: addresses mxgate stops mailing (issue 6 §6). Hard bounces (Invalid
//! address, Mailbox, when words or the status code said so), spam complaints (ARF / SES feedback) and unsubscribes add an address
//! with its reason, time and source; operators list, add and remove entries through
//! `/api/suppressions` and `mxgate suppress`. Submission asks [`SuppressionList::is_suppressed`]
//! at RCPT and answers `550 5.7.1 Recipient suppressed`.
//!
//! Storage: the `suppressions` family of the one RocksDB, one key `s/<address>` per entry,
//! the value the JSON of [`Suppression`]; every write is synced before it returns. The set
//! of addresses is also held in memory (loaded at open), so the RCPT check is a hash lookup
//! that never blocks on disk.
//!
//! Addresses are compared lower-cased: RFC 5321 lets a local part be case sensitive, but no
//! mailbox provider in practice treats `Bob@` and `bob@` as two people, and a suppression
//! that misses on case would mail a dead or complaining address again.
//!
//! This file holds what the API, the CLI and report share — the entry types, the rules of
//! which bounces and complaints suppress (applied by [`report`](crate::report) alone),
//! address normalisation and text limits; the store behind [`SuppressionList`] is in `store`.

mod store;

pub use store::SuppressionList;

use serde::{Deserialize, Serialize};

use crate::bounce::Category;

/// Errors of the suppression store.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    #[error("suppression store: {0}")]
    Db(crate::db::DbError),
    #[error("suppression store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt suppression record for {address}: {source}")]
    Corrupt {
        address: String,
        source: serde_json::Error,
    },
    #[error("{0:?} is not an e-mail address")]
    BadAddress(String),
    #[error("suppression store is closed")]
    Closed,
    #[error("suppression store task failed: {0}")]
    Task(String),
}

impl From<crate::db::DbError> for SuppressError {
    fn from(e: crate::db::DbError) -> SuppressError {
        match e {
            crate::db::DbError::Closed => SuppressError::Closed,
            crate::db::DbError::Rocks(e) => SuppressError::Rocks(e),
            e => SuppressError::Db(e),
        }
    }
}

/// Why an address is on the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A permanent bounce in a hard category (Invalid address, Mailbox).
    Bounce,
    /// A spam / abuse complaint (ARF feedback report, provider feedback loop).
    Complaint,
    /// The recipient unsubscribed (RFC 8058 one-click, unsubscribe alias).
    Unsubscribe,
    /// Added by an operator (API / CLI).
    Manual,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Bounce => "bounce",
            Source::Complaint => "complaint",
            Source::Unsubscribe => "unsubscribe",
            Source::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [
            Source::Bounce,
            Source::Complaint,
            Source::Unsubscribe,
            Source::Manual,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

/// One suppressed address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Lower-cased address.
    pub address: String,
    /// Short reason: the bounce category ("Invalid address"), the complaint's feedback type
    /// ("complaint: abuse"), "unsubscribe", or the operator's words.
    pub reason: String,
    pub source: Source,
    /// When the entry was made, milliseconds since the epoch.
    pub created_ms: u64,
    /// Supporting detail: the remote diagnostic, the queue id of the message, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Does a bounce of `category` say the address itself is dead, so mail to it must stop
/// (issue 6 §6)? Only permanent `Invalid address` and `Mailbox` failures: a full mailbox,
/// a block or a rate limit is about this message or this sender, not the address. And only
/// a `certain` verdict ([`Classification::certain`](crate::bounce::Classification)): a bare
/// reply code 550, or 550 with status 5.7.1 and no readable words, is filed under Invalid
/// address by the code table, yet as often a policy refusal; Postfix and KumoMTA users expect an address
/// suppressed on a clear "no such user" only, since a wrong suppression silently loses a
/// customer while a missed one costs one more bounce.
pub fn suppresses_bounce(category: Category, permanent: bool, certain: bool) -> bool {
    permanent && certain && matches!(category, Category::InvalidAddress | Category::Mailbox)
}

/// Does a complaint of this RFC 5965 Feedback-Type mean the recipient does not want the
/// mail? `not-spam` says the opposite and `auth-failure` is a DMARC/DKIM failure report
/// about the sender, not the recipient's wish; everything else (abuse, fraud, virus, other,
/// or no type at all, as some feedback loops send) is a complaint.
pub fn complaint_suppresses(feedback_type: Option<&str>) -> bool {
    !matches!(feedback_type, Some("not-spam" | "auth-failure"))
}

/// What [`SuppressionList::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The address was not on the list.
    New,
    /// The address was listed; its entry now has the new reason and source.
    Replaced,
    /// The address was already listed by an operator; an automatic entry does not overwrite
    /// the operator's words.
    Kept,
}

/// Longest address accepted (RFC 5321 §4.5.3.1.3 path limit).
const MAX_ADDRESS: usize = 256;
/// Longest reason / detail stored.
const MAX_TEXT: usize = 1000;

/// `<Bob@Example.COM>` → `bob@example.com`; `None` when it is no plausible address.
pub fn normalize_address(raw: &str) -> Option<String> {
    let a = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let (local, domain) = a.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && a.len() <= MAX_ADDRESS
        && !a.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| a.to_lowercase())
}

/// `s` trimmed and cut to [`MAX_TEXT`] bytes (on a character boundary), as stored.
fn cut(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certain_hard_permanent_bounces_suppress() {
        assert!(suppresses_bounce(Category::InvalidAddress, true, true));
        assert!(suppresses_bounce(Category::Mailbox, true, true));
        assert!(!suppresses_bounce(Category::InvalidAddress, false, true));
        assert!(!suppresses_bounce(Category::InvalidAddress, true, false));
        assert!(!suppresses_bounce(Category::Mailbox, true, false));
        for &c in Category::ALL {
            let hard = matches!(c, Category::InvalidAddress | Category::Mailbox);
            assert_eq!(suppresses_bounce(c, true, true), hard, "{c:?}");
        }
    }

    #[test]
    fn a_code_table_invalid_address_does_not_suppress_a_clear_no_such_user_does() {
        use crate::bounce::classify_reply;
        let suppresses = |code, status, text| {
            let c = classify_reply(Some(code), status, text);
            suppresses_bounce(c.category, true, c.certain)
        };
        // Filed under Invalid address by the code table alone: no suppression.
        assert!(!suppresses(550, None, ""));
        assert!(!suppresses(550, Some("5.7.1"), ""));
        assert!(!suppresses(550, Some("5.7.1"), "xq-77 zz"));
        assert!(!suppresses(550, None, "Recipient rejected"));
        // Words, or a status code with one meaning (RFC 3463 X.1.1), say the user is gone.
        assert!(suppresses(550, Some("5.7.1"), "No such user here"));
        assert!(suppresses(550, Some("5.1.1"), ""));
        assert!(suppresses(
            550,
            None,
            "The email account that you tried to reach is disabled"
        ));
    }

    #[test]
    fn complaints_suppress_unless_not_spam_or_an_auth_failure_report() {
        assert!(complaint_suppresses(Some("abuse")));
        assert!(complaint_suppresses(None));
        assert!(!complaint_suppresses(Some("not-spam")));
        assert!(!complaint_suppresses(Some("auth-failure")));
    }
}
