//! RFC 5965 Abuse Reporting Format: `multipart/report; report-type=feedback-report`.
//! A complaint is no bounce: the report carries the feedback type and, in the returned
//! headers, the message complained about.

/// RFC 5965 §3.1 `Feedback-Type` (abuse, fraud, auth-failure, not-spam, virus, other...).
pub(crate) fn feedback_type(report: &str) -> Option<String> {
    report.lines().take(500).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("feedback-type")
            .then(|| value.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
    })
}

/// RFC 5965 §3.2 `Original-Rcpt-To` / `Removal-Recipient`: who complained.
pub(crate) fn complainant(report: &str) -> Option<String> {
    report.lines().take(500).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let n = name.trim().to_ascii_lowercase();
        (n == "original-rcpt-to" || n == "removal-recipient")
            .then(|| value.trim().trim_matches(['<', '>']).to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn feedback_fields_are_read() {
        let r = "Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\nOriginal-Rcpt-To: <u@example.test>\n";
        assert_eq!(super::feedback_type(r).as_deref(), Some("abuse"));
        assert_eq!(super::complainant(r).as_deref(), Some("u@example.test"));
    }
}
