//! RFC 3464 `message/delivery-status` fields.
//!
//! Input: the body of the delivery-status part (or notice text that quotes the same fields).
//! Output: the per-message fields and one `DsnRecipient` per recipient block.
//! RFC 3464 §2.1: blocks are separated by blank lines, fields fold like RFC 5322 headers.
//! Real MTAs omit the blank lines or order fields freely, so a recipient block also starts at
//! a second Final-Recipient / Original-Recipient.

/// Per-message fields (RFC 3464 §2.2).
#[derive(Debug, Default, Clone)]
pub(crate) struct DsnMessage {
    pub reporting_mta: Option<String>,
    /// RFC 3464 §2.2.1 Original-Envelope-Id (the ENVID of RFC 3461 §4.4).
    pub envid: Option<String>,
    pub recipients: Vec<DsnRecipient>,
}

/// Per-recipient fields (RFC 3464 §2.3).
#[derive(Debug, Default, Clone)]
pub(crate) struct DsnRecipient {
    pub final_recipient: Option<String>,
    /// RFC 3461 §4.2 ORCPT as echoed in Original-Recipient.
    pub original_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub remote_mta: Option<String>,
    pub diagnostic: Option<String>,
    pub last_attempt: Option<String>,
}

impl DsnRecipient {
    pub fn address(&self) -> Option<&str> {
        self.final_recipient
            .as_deref()
            .or(self.original_recipient.as_deref())
    }
}

/// At most this many recipients are read from one report (bounded work on hostile input).
const MAX_RECIPIENTS: usize = 100;

/// Parses the fields. Unknown fields are ignored; missing ones stay `None`.
pub(crate) fn parse(text: &str) -> DsnMessage {
    let mut msg = DsnMessage::default();
    let mut cur = DsnRecipient::default();
    for (name, value) in fields(text) {
        let Some((name, value)) = name.map(|n| (n, value)) else {
            flush(&mut msg, &mut cur);
            continue;
        };
        match name.as_str() {
            "reporting-mta" => msg.reporting_mta = Some(strip_type(&value)),
            "original-envelope-id" | "x-original-envelope-id" | "envelope-id" => {
                msg.envid = Some(value.trim().to_owned())
            }
            "final-recipient" => {
                let sendmail_order = cur.original_recipient.is_some() && cur.status.is_some();
                if cur.final_recipient.is_some() || sendmail_order {
                    flush(&mut msg, &mut cur);
                }
                cur.final_recipient = address_value(&value);
            }
            "original-recipient" => {
                let postfix_order = cur.final_recipient.is_some()
                    && (cur.status.is_some() || cur.diagnostic.is_some());
                if cur.original_recipient.is_some() || postfix_order {
                    flush(&mut msg, &mut cur);
                }
                cur.original_recipient = address_value(&value);
            }
            "action" => cur.action = Some(value.trim().to_ascii_lowercase()),
            "status" => cur.status = status_value(&value),
            "remote-mta" => cur.remote_mta = Some(strip_type(&value)),
            "diagnostic-code" => cur.diagnostic = Some(strip_type(&value)),
            "last-attempt-date" => cur.last_attempt = Some(value.trim().to_owned()),
            _ => {}
        }
        if msg.recipients.len() >= MAX_RECIPIENTS {
            break;
        }
    }
    flush(&mut msg, &mut cur);
    msg
}

fn flush(msg: &mut DsnMessage, cur: &mut DsnRecipient) {
    let r = std::mem::take(cur);
    // A recipient listed twice (hostile or buggy reports) is reported once.
    let repeated = r.address().is_some()
        && msg
            .recipients
            .iter()
            .any(|x| x.address() == r.address() && x.action == r.action);
    if !repeated && (r.address().is_some() || r.status.is_some() || r.diagnostic.is_some()) {
        msg.recipients.push(r);
    }
}

/// Yields `(Some(lower-case name), unfolded value)` per field and `(None, _)` per blank line.
fn fields(text: &str) -> impl Iterator<Item = (Option<String>, String)> + '_ {
    let mut lines = text.lines().take(5000).peekable();
    std::iter::from_fn(move || {
        let line = lines.next()?;
        if line.trim().is_empty() {
            return Some((None, String::new()));
        }
        let Some((name, first)) = line.split_once(':') else {
            return Some((Some(String::new()), String::new()));
        };
        let mut value = first.trim().to_owned();
        while let Some(next) = lines.peek() {
            if !next.starts_with([' ', '\t']) || next.trim().is_empty() {
                break;
            }
            // Keep the line break: multi-line SMTP replies ("550-5.7.1 ...") stay readable.
            value.push('\n');
            value.push_str(next.trim());
            lines.next();
        }
        Some((Some(name.trim().to_ascii_lowercase()), value))
    })
}

/// `rfc822; a@b` → `a@b`; `smtp; 550 ...` → `550 ...`; `dns; mx.example` → `mx.example`.
fn strip_type(value: &str) -> String {
    let v = value.trim();
    match v.split_once(';') {
        Some((t, rest)) if !t.contains(' ') && t.len() < 16 => rest.trim().to_owned(),
        _ => v.to_owned(),
    }
}

fn address_value(value: &str) -> Option<String> {
    let v = strip_type(value);
    let v = v.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace());
    (!v.is_empty()).then(|| v.to_owned())
}

/// `Status: 5.1.1 (user unknown)` → `5.1.1`.
fn status_value(value: &str) -> Option<String> {
    super::codes::find_status(value.trim()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_split_by_blank_lines_and_repeated_fields() {
        let text = "Reporting-MTA: dns; mx.example.test\nOriginal-Envelope-Id: ENV123\n\n\
            Final-Recipient: rfc822; a@example.test\nAction: failed\nStatus: 5.1.1\n\
            Diagnostic-Code: smtp; 550 5.1.1 <a@example.test>...\n   User unknown\n\
            Final-Recipient: rfc822;b@example.test\nAction: delayed\nStatus: 4.2.2 (full)\n";
        let m = parse(text);
        assert_eq!(m.reporting_mta.as_deref(), Some("mx.example.test"));
        assert_eq!(m.envid.as_deref(), Some("ENV123"));
        assert_eq!(m.recipients.len(), 2);
        let a = &m.recipients[0];
        assert_eq!(a.address(), Some("a@example.test"));
        assert_eq!(
            a.diagnostic.as_deref(),
            Some("550 5.1.1 <a@example.test>...\nUser unknown")
        );
        assert_eq!(m.recipients[1].status.as_deref(), Some("4.2.2"));
        assert_eq!(m.recipients[1].action.as_deref(), Some("delayed"));
    }

    #[test]
    fn original_recipient_before_final_stays_in_one_block() {
        let m = parse(
            "Original-Recipient: rfc822;x@y\nFinal-Recipient: RFC822; <x@y>\nAction: failed\n",
        );
        assert_eq!(m.recipients.len(), 1);
        assert_eq!(m.recipients[0].final_recipient.as_deref(), Some("x@y"));
    }
}
