//! Amazon SES notifications delivered by mail (or forwarded from SNS): a JSON body with
//! `notificationType` (or `eventType`) Bounce / Complaint / Delivery, optionally wrapped in
//! an SNS envelope whose `Message` is the JSON as a string.

use serde_json::Value;

use crate::bounce::rfc3464::{DsnMessage, DsnRecipient};

/// What an SES notification reports.
#[derive(Debug)]
pub(crate) enum SesNotice {
    /// Failed recipients, as RFC 3464 fields.
    Bounce(DsnMessage),
    /// Complaint: feedback type and complainants.
    Complaint(Option<String>, Vec<String>),
    /// Delivered recipients.
    Delivery(DsnMessage),
}

/// Reads an SES JSON notification; `None` for anything else.
pub(crate) fn parse(body: &str) -> Option<SesNotice> {
    let body = body.trim();
    if !body.starts_with('{') || !body.contains("Type\"") {
        return None;
    }
    let mut v: Value = serde_json::from_str(body).ok()?;
    if let Some(inner) = v.get("Message").and_then(Value::as_str) {
        v = serde_json::from_str(inner).ok()?;
    }
    let kind = v
        .get("notificationType")
        .or_else(|| v.get("eventType"))?
        .as_str()?;
    match kind {
        "Bounce" => Some(SesNotice::Bounce(bounce(&v["bounce"]))),
        "Complaint" => {
            let c = &v["complaint"];
            let who = list(&c["complainedRecipients"])
                .iter()
                .filter_map(|r| text(r, "emailAddress"))
                .collect();
            Some(SesNotice::Complaint(text(c, "complaintFeedbackType"), who))
        }
        "Delivery" => Some(SesNotice::Delivery(delivery(&v["delivery"]))),
        _ => None,
    }
}

fn bounce(b: &Value) -> DsnMessage {
    let permanent = b["bounceType"].as_str() == Some("Permanent");
    let recipients = list(&b["bouncedRecipients"])
        .iter()
        .take(100)
        .map(|r| DsnRecipient {
            final_recipient: text(r, "emailAddress"),
            action: text(r, "action")
                .or_else(|| Some(if permanent { "failed" } else { "delayed" }.into())),
            status: text(r, "status"),
            diagnostic: text(r, "diagnosticCode").map(|d| strip_smtp(&d)),
            ..DsnRecipient::default()
        })
        .collect();
    DsnMessage {
        reporting_mta: text(b, "reportingMTA").map(|m| strip_smtp(&m)),
        envid: None,
        recipients,
    }
}

fn delivery(d: &Value) -> DsnMessage {
    let response = text(d, "smtpResponse");
    let recipients = list(&d["recipients"])
        .iter()
        .take(100)
        .filter_map(Value::as_str)
        .map(|a| DsnRecipient {
            final_recipient: Some(a.to_owned()),
            action: Some("delivered".into()),
            diagnostic: response.clone(),
            ..DsnRecipient::default()
        })
        .collect();
    DsnMessage {
        reporting_mta: text(d, "reportingMTA"),
        envid: None,
        recipients,
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// `smtp; 550 ...` / `dsn; host` → the value.
fn strip_smtp(s: &str) -> String {
    match s.split_once(';') {
        Some((t, rest)) if !t.contains(' ') && t.len() < 16 => rest.trim().to_owned(),
        _ => s.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_wrapped_bounce_is_read() {
        let inner = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a1.smtp-out.amazonses.com"}}"#;
        let outer = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        let Some(SesNotice::Bounce(m)) = parse(&outer) else {
            panic!("not a bounce")
        };
        assert_eq!(
            m.recipients[0].final_recipient.as_deref(),
            Some("a@example.org")
        );
        assert_eq!(
            m.recipients[0].diagnostic.as_deref(),
            Some("550 5.1.1 user unknown")
        );
        assert_eq!(
            m.reporting_mta.as_deref(),
            Some("a1.smtp-out.amazonses.com")
        );
    }

    #[test]
    fn complaints_and_other_json_are_told_apart() {
        let c = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"u@x.test"}],"complaintFeedbackType":"abuse"}}"#;
        assert!(matches!(parse(c), Some(SesNotice::Complaint(Some(t), _)) if t == "abuse"));
        assert!(parse(r#"{"hello":"world"}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
