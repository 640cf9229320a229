//! The verdict in the delivered message: `X-Spam-Status` and `X-Spam-Score` (SPEC
//! "Headers"), the fields rspamd's `milter_headers` asks to add, and its edits of the
//! message (fields to remove, the rewritten Subject).
//!
//! `X-Spam-Status: Yes, score=8.00 required=15.00 action=add_header tests=A,B` follows
//! SpamAssassin's layout, which ERP mail filters already match on: `Yes` when rspamd's
//! action is `add header`, `rewrite subject` or `reject` (a `tag` domain delivers those),
//! else `No`; `unknown` alone when rspamd gave no verdict (`spam.on_error = "accept"`).
//! Copies of both fields the sender put in the message are removed, so the ERP never
//! reads a verdict mxgate did not write.

use super::Verdict;
use crate::message;

pub const STATUS: &str = "X-Spam-Status";
pub const SCORE: &str = "X-Spam-Score";

/// Symbol lists are folded before a line passes this (RFC 5322 §2.1.1 recommends 78).
const LINE: usize = 76;

/// The header fields to put on top of the message, CRLF-terminated.
pub fn fields(verdict: Option<&Verdict>) -> String {
    let Some(v) = verdict else {
        return format!("{STATUS}: unknown\r\n");
    };
    let yes = if v.action.is_spam() { "Yes" } else { "No" };
    let mut status = format!(
        "{STATUS}: {yes}, score={:.2} required={:.2} action={}",
        v.score,
        v.required_score,
        v.action.as_label()
    );
    let mut line_len = status.len();
    for (i, sym) in v.symbols.iter().enumerate() {
        let (sep, word) = if i == 0 { (" ", "tests=") } else { (",", "") };
        if line_len + sep.len() + word.len() + sym.len() > LINE {
            // Fold: a comma stays at the end of its line, the list goes on after a tab.
            status.push_str(if i == 0 { "\r\n\t" } else { ",\r\n\t" });
            line_len = 1;
        } else {
            status.push_str(sep);
            line_len += sep.len();
        }
        status.push_str(word);
        status.push_str(sym);
        line_len += word.len() + sym.len();
    }
    let mut out = format!("{status}\r\n{SCORE}: {:.2}\r\n", v.score);
    for (name, value) in &v.add_headers {
        if is_ours(name) || !valid_name(name) {
            continue;
        }
        out.push_str(&format!("{name}: {}\r\n", folded(value)));
    }
    out
}

/// The message without the sender's `X-Spam-*` verdict fields and the fields rspamd asks
/// to remove, with rspamd's new Subject when it rewrote it.
pub fn apply(content: Vec<u8>, verdict: Option<&Verdict>) -> Vec<u8> {
    let remove = |f: &message::Field<'_>| {
        is_ours_bytes(f.name()) || verdict.is_some_and(|v| v.remove_headers.iter().any(|n| f.is(n)))
    };
    let subject = verdict.and_then(|v| v.subject.as_deref());
    let (head, rest) = message::split(&content);
    let mut out = Vec::with_capacity(content.len() + 64);
    let mut rewrote = false;
    for field in message::fields(head) {
        if remove(&field) {
            continue;
        }
        match subject {
            Some(s) if field.is("subject") && !rewrote => {
                out.extend_from_slice(format!("Subject: {}\r\n", folded(s)).as_bytes());
                rewrote = true;
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    if let (Some(s), false) = (subject, rewrote) {
        out.extend_from_slice(format!("Subject: {}\r\n", folded(s)).as_bytes());
    }
    out.extend_from_slice(rest);
    out
}

fn is_ours(name: &str) -> bool {
    is_ours_bytes(name.as_bytes())
}

fn is_ours_bytes(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(STATUS.as_bytes()) || name.eq_ignore_ascii_case(SCORE.as_bytes())
}

/// RFC 5322 §3.6.8 field name: printable ASCII except `:`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// A value from rspamd as a header value: its line breaks kept as folds (CRLF + tab),
/// other control characters dropped, so it can never end the field or the header section.
fn folded(value: &str) -> String {
    let lines: Vec<String> = value
        .split('\n')
        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\r\n\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spam::Action;

    fn verdict() -> Verdict {
        Verdict {
            action: Action::AddHeader,
            score: 8.0,
            required_score: 15.0,
            message: None,
            symbols: (0..12).map(|i| format!("SYMBOL_NUMBER_{i}")).collect(),
            subject: None,
            add_headers: vec![
                (
                    "X-Spamd-Result".into(),
                    "default: False [8.00 / 15.00];\r\n\tA(8.00)[]".into(),
                ),
                ("X-Spam-Status".into(), "rspamd's own".into()),
                ("Bad Name".into(), "x".into()),
                ("X-Evil".into(), "a\r\n\r\nBody: injected\rX".into()),
            ],
            remove_headers: vec!["X-Spamd-Result".into()],
        }
    }

    #[test]
    fn fields_carry_status_score_and_rspamds_headers_folded_and_safe() {
        let f = fields(Some(&verdict()));
        assert!(f.starts_with("X-Spam-Status: Yes, score=8.00 required=15.00 action=add_header\r\n\ttests=SYMBOL_NUMBER_0,SYMBOL_NUMBER_1,"), "{f}");
        assert!(f.contains("X-Spam-Score: 8.00\r\n"), "{f}");
        assert!(
            f.contains("X-Spamd-Result: default: False [8.00 / 15.00];\r\n\tA(8.00)[]\r\n"),
            "{f}"
        );
        assert!(f.contains("X-Evil: a\r\n\tBody: injectedX\r\n"), "{f}");
        assert!(
            !f.contains("rspamd's own") && !f.contains("Bad Name"),
            "{f}"
        );
        for line in f.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(
                line.len() <= 80 || line.starts_with("X-Spamd"),
                "long line {line:?}"
            );
        }
        let head = message::header_section(f.as_bytes());
        assert_eq!(message::fields(head).count(), 4, "{f}");
        assert_eq!(fields(None), "X-Spam-Status: unknown\r\n");
    }

    #[test]
    fn apply_drops_forged_verdicts_and_rspamds_removals_and_rewrites_the_subject() {
        let msg = b"X-Spam-Status: No\r\nSubject: hi\r\n there\r\nx-spam-score: -5\r\nX-Spamd-Result: forged\r\nTo: a@b.test\r\n\r\nX-Spam-Status: body\r\n".to_vec();
        let out = apply(msg.clone(), None);
        assert_eq!(out, b"Subject: hi\r\n there\r\nX-Spamd-Result: forged\r\nTo: a@b.test\r\n\r\nX-Spam-Status: body\r\n");
        let mut v = verdict();
        v.subject = Some("[SPAM] hi there".into());
        let out = apply(msg, Some(&v));
        assert_eq!(
            out,
            b"Subject: [SPAM] hi there\r\nTo: a@b.test\r\n\r\nX-Spam-Status: body\r\n"
        );
        let out = apply(b"To: a@b.test\r\n\r\nbody".to_vec(), Some(&v));
        assert_eq!(out, b"To: a@b.test\r\nSubject: [SPAM] hi there\r\n\r\nbody");
    }
}
