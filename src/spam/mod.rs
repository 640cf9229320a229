//! Spam filtering of inbound mail with rspamd (issue 16 item 1), between sender
//! authentication and the queue.
//!
//! Input: the message after [`auth`](crate::auth), its envelope and [`AuthVerdict`]
//! ([`Request`]). Output: a [`Disposition`] — refuse with a [`Reply`], or deliver with the
//! verdict's header fields on top ([`headers`]). Invariants:
//! - the scan finishes (answer, error or `spam.timeout`) before the session replies, so a
//!   rejected message is never 250'd;
//! - an `enforce` domain refuses on `reject` (550 5.7.1) and `soft reject`/`greylist`
//!   (451 4.7.1); a `tag` domain is never refused for spam, only tagged;
//! - rspamd down, slow or unreadable follows `spam.on_error` (accept, tagged `unknown`, or
//!   451 4.7.1), for either mode: a verdict nobody got is not spam's to decide.
//!
//! [`AuthVerdict`]: crate::auth::AuthVerdict

pub mod headers;
pub mod rspamd;

use std::time::Duration;

pub use rspamd::{Request, Scanner};

use crate::config::{SpamMode, SpamOnError};
use crate::reply::{self, Reply};

/// rspamd's action for a message (its `actions` thresholds or a rule's forced action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Reject,
    SoftReject,
    Greylist,
    AddHeader,
    RewriteSubject,
    NoAction,
    /// A custom action (`discard`, `quarantine`, ...): delivered and tagged, mxgate has no
    /// meaning for it.
    Other(String),
}

impl Action {
    pub fn from_rspamd(s: &str) -> Action {
        match s {
            "reject" => Action::Reject,
            "soft reject" => Action::SoftReject,
            "greylist" => Action::Greylist,
            "add header" => Action::AddHeader,
            "rewrite subject" => Action::RewriteSubject,
            "no action" => Action::NoAction,
            other => Action::Other(other.to_string()),
        }
    }

    /// The `action` label of `mxgate_spam_results_total` (bounded: custom ones are `other`).
    pub fn as_label(&self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::SoftReject => "soft_reject",
            Action::Greylist => "greylist",
            Action::AddHeader => "add_header",
            Action::RewriteSubject => "rewrite_subject",
            Action::NoAction => "no_action",
            Action::Other(_) => "other",
        }
    }

    /// rspamd's own name, as the `X-Spam-Status` field shows it.
    pub fn as_rspamd(&self) -> &str {
        match self {
            Action::Reject => "reject",
            Action::SoftReject => "soft reject",
            Action::Greylist => "greylist",
            Action::AddHeader => "add header",
            Action::RewriteSubject => "rewrite subject",
            Action::NoAction => "no action",
            Action::Other(s) => s,
        }
    }

    /// Spam by rspamd's judgement (`X-Spam-Status: Yes`): over the add-header threshold.
    pub fn is_spam(&self) -> bool {
        matches!(
            self,
            Action::Reject | Action::AddHeader | Action::RewriteSubject
        )
    }
}

/// rspamd's verdict on one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    /// rspamd's reject threshold.
    pub required_score: f64,
    /// `messages.smtp_message`: the text a rule wants the client to see.
    pub message: Option<String>,
    /// Symbol names that matched, sorted.
    pub symbols: Vec<String>,
    /// The new Subject with `rewrite subject`.
    pub subject: Option<String>,
    /// `milter.add_headers`: fields to add, in name order.
    pub add_headers: Vec<(String, String)>,
    /// `milter.remove_headers`: field names to remove from the message.
    pub remove_headers: Vec<String>,
}

/// No verdict: the message is handled by `spam.on_error`.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("rspamd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rspamd request failed: {0}")]
    Http(String),
    #[error("rspamd answered HTTP {0}")]
    Status(u16),
    #[error("rspamd's answer is not a /checkv2 result: {0}")]
    Answer(String),
}

/// What happens to the message.
#[derive(Debug, PartialEq)]
pub enum Disposition {
    Refuse(Reply),
    /// Delivered; `verdict` is `None` when rspamd gave none (`X-Spam-Status: unknown`).
    Deliver {
        verdict: Option<Verdict>,
    },
}

/// The one place rspamd's answer becomes mxgate's decision.
pub fn decide(
    mode: SpamMode,
    on_error: SpamOnError,
    scan: Result<Verdict, ScanError>,
) -> Disposition {
    let verdict = match scan {
        Ok(v) => v,
        Err(_) if on_error == SpamOnError::Tempfail => {
            return Disposition::Refuse(reply::SPAM_FILTER_UNAVAILABLE);
        }
        Err(_) => return Disposition::Deliver { verdict: None },
    };
    if mode != SpamMode::Enforce {
        return Disposition::Deliver {
            verdict: Some(verdict),
        };
    }
    match verdict.action {
        Action::Reject => Disposition::Refuse(match verdict.message.as_deref().map(reply_text) {
            Some(text) if !text.is_empty() => reply::SPAM_REJECTED.with_text(text),
            _ => reply::SPAM_REJECTED,
        }),
        Action::SoftReject | Action::Greylist => Disposition::Refuse(reply::SPAM_DEFERRED),
        _ => Disposition::Deliver {
            verdict: Some(verdict),
        },
    }
}

/// rspamd's message on one reply line: printable ASCII, bounded (it comes from rules that
/// may quote the message; a CR/LF in it would forge another reply line).
fn reply_text(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = one_line.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: &str, message: Option<&str>) -> Verdict {
        Verdict {
            action: Action::from_rspamd(action),
            score: 15.0,
            required_score: 15.0,
            message: message.map(str::to_string),
            symbols: vec![],
            subject: None,
            add_headers: vec![],
            remove_headers: vec![],
        }
    }

    #[test]
    fn enforce_refuses_reject_with_rspamds_message_and_defers_soft_reject_and_greylist() {
        let d = decide(
            SpamMode::Enforce,
            SpamOnError::Accept,
            Ok(verdict("reject", Some("Gtube pattern"))),
        );
        assert_eq!(
            d,
            Disposition::Refuse(reply::SPAM_REJECTED.with_text("Gtube pattern"))
        );
        let d = decide(
            SpamMode::Enforce,
            SpamOnError::Accept,
            Ok(verdict("reject", Some("a\r\n250 ok"))),
        );
        assert_eq!(
            d,
            Disposition::Refuse(reply::SPAM_REJECTED.with_text("a 250 ok"))
        );
        let d = decide(
            SpamMode::Enforce,
            SpamOnError::Accept,
            Ok(verdict("reject", None)),
        );
        assert_eq!(d, Disposition::Refuse(reply::SPAM_REJECTED));
        for a in ["soft reject", "greylist"] {
            let d = decide(SpamMode::Enforce, SpamOnError::Accept, Ok(verdict(a, None)));
            assert_eq!(d, Disposition::Refuse(reply::SPAM_DEFERRED), "{a}");
        }
        for a in ["add header", "rewrite subject", "no action", "discard"] {
            let d = decide(SpamMode::Enforce, SpamOnError::Accept, Ok(verdict(a, None)));
            assert!(
                matches!(d, Disposition::Deliver { verdict: Some(_) }),
                "{a}"
            );
        }
    }

    #[test]
    fn tag_never_refuses_a_verdict_and_on_error_decides_without_one() {
        for a in ["reject", "soft reject", "greylist"] {
            let d = decide(SpamMode::Tag, SpamOnError::Tempfail, Ok(verdict(a, None)));
            assert!(
                matches!(d, Disposition::Deliver { verdict: Some(_) }),
                "{a}"
            );
        }
        for mode in [SpamMode::Enforce, SpamMode::Tag] {
            let err = || Err(ScanError::Status(500));
            assert_eq!(
                decide(mode, SpamOnError::Accept, err()),
                Disposition::Deliver { verdict: None }
            );
            assert_eq!(
                decide(mode, SpamOnError::Tempfail, err()),
                Disposition::Refuse(reply::SPAM_FILTER_UNAVAILABLE)
            );
        }
    }

    #[test]
    fn replies_read_as_the_issue_asks() {
        assert_eq!(
            reply::SPAM_REJECTED.to_string(),
            "550 5.7.1 Message rejected as spam"
        );
        assert_eq!(
            (reply::SPAM_DEFERRED.code, reply::SPAM_DEFERRED.status),
            (451, "4.7.1")
        );
        let unavailable = &reply::SPAM_FILTER_UNAVAILABLE;
        assert_eq!((unavailable.code, unavailable.status), (451, "4.7.1"));
    }
}
