//! SMTP reply codes (RFC 5321 §4.2) and enhanced status codes (RFC 3463, RFC 5248 registry):
//! finding them in free text, and what a code says on its own when the text says nothing.

use super::category::Reason;

/// RFC 3463 §2: `class "." subject "." detail`, class 2/4/5, subject 1-3 digits, detail 1-3.
/// Returns the first well-formed code in `text` (not part of a longer dotted number).
pub fn find_status(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 4 < b.len() {
        if matches!(b[i], b'2' | b'4' | b'5')
            && b[i + 1] == b'.'
            && (i == 0 || !is_code_char(b[i - 1]))
            && let Some(end) = status_end(b, i)
        {
            return text.get(i..end);
        }
        i += 1;
    }
    None
}

/// The first failure code (class 4 or 5) in `text`, else the first code: in a session
/// transcript the `250 2.1.5 Ok` lines before the refusal are not what failed.
pub fn find_failure_status(text: &str) -> Option<&str> {
    let first = find_status(text)?;
    if !first.starts_with('2') {
        return Some(first);
    }
    let mut rest = text;
    while let Some(s) = find_status(rest) {
        if !s.starts_with('2') {
            return Some(s);
        }
        // `s` borrows from `rest`: continue right after it.
        let at = s.as_ptr() as usize - rest.as_ptr() as usize + s.len();
        rest = &rest[at..];
    }
    Some(first)
}

/// As [`find_reply_code`], but a 4xx/5xx reply wins over 2xx/3xx ones met earlier.
pub fn find_failure_reply_code(text: &str) -> Option<u16> {
    let first = find_reply_code(text)?;
    if first >= 400 {
        return Some(first);
    }
    text.lines()
        .filter_map(find_reply_code)
        .find(|c| *c >= 400)
        .or(Some(first))
}

fn is_code_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'/' || c == b'@'
}

/// End offset of a status code starting at `i` (`b[i]` is the class digit, `b[i+1]` a dot).
fn status_end(b: &[u8], i: usize) -> Option<usize> {
    let subject = digits(b, i + 2, 3)?;
    if b.get(subject) != Some(&b'.') {
        return None;
    }
    let detail = digits(b, subject + 1, 3)?;
    match b.get(detail) {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'@' => None,
        Some(b'.') if b.get(detail + 1).is_some_and(u8::is_ascii_digit) => None,
        _ => Some(detail),
    }
}

/// Skips 1..=max digits from `start`; returns the offset after them.
fn digits(b: &[u8], start: usize, max: usize) -> Option<usize> {
    let mut end = start;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    (end > start && end - start <= max).then_some(end)
}

/// The SMTP reply code of a server reply quoted in `text`: a 2xx/4xx/5xx number standing as a
/// word and followed by a space, a dash (multi-line replies) or the end. A code right before
/// an enhanced status code wins over a bare number met earlier.
pub fn find_reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    let mut first = None;
    let mut i = 0;
    while i + 3 <= b.len() {
        if let Some(code) = reply_code_at(b, i) {
            let rest = text.get(i + 4..).unwrap_or("").trim_start();
            let rb = rest.as_bytes();
            let status_follows = rb.len() > 4
                && matches!(rb[0], b'2' | b'4' | b'5')
                && rb[1] == b'.'
                && status_end(rb, 0).is_some();
            if status_follows {
                return Some(code);
            }
            first.get_or_insert(code);
            i += 3;
        }
        i += 1;
    }
    first
}

fn reply_code_at(b: &[u8], i: usize) -> Option<u16> {
    let d = &b[i..i + 3];
    if !matches!(d[0], b'2' | b'4' | b'5') || !d[1].is_ascii_digit() || !d[2].is_ascii_digit() {
        return None;
    }
    if d[1] > b'5' {
        return None;
    }
    let before_ok = i == 0
        || matches!(
            b[i - 1],
            b' ' | b'\t' | b'\n' | b'(' | b'[' | b':' | b'"' | b'\'' | b'<' | b'#' | b';'
        )
        // The end of a non-ASCII character: CJK punctuation ("详细信息：552 ...").
        || b[i - 1] >= 0x80;
    let after_ok = match b.get(i + 3) {
        None => true,
        Some(c) => matches!(
            c,
            b' ' | b'-' | b'\t' | b'\r' | b'\n' | b']' | b')' | b',' | b':'
        ),
    };
    // "550-5.7.1" or "550 5.7.1" or "550 text"; not "550-1234" (phone numbers, ids).
    let dash_digit = b.get(i + 3) == Some(&b'-')
        && b.get(i + 4).is_some_and(u8::is_ascii_digit)
        && b.get(i + 5) != Some(&b'.');
    (before_ok && after_ok && !dash_digit).then(|| {
        u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0')
    })
}

/// What a bare reply code says: only the few codes with one meaning (RFC 5321 §4.2.3).
pub(crate) fn reason_from_reply(code: u16) -> Option<(Reason, u16)> {
    let reason = match code {
        421 => Reason::Blocked,
        452 => Reason::TooManyConn,
        552 => Reason::MailboxFull,
        553 => Reason::Rejected,
        500..=504 => Reason::SyntaxError,
        530 | 535 | 538 => Reason::SecurityError,
        551 => Reason::UserUnknown,
        556 | 521 => Reason::NotAccept,
        _ => return None,
    };
    Some((reason, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_found_only_as_a_whole_code() {
        assert_eq!(find_status("550 5.1.1 <a@b>: User unknown"), Some("5.1.1"));
        assert_eq!(
            find_status("smtp; 550-5.7.26 Unauthenticated"),
            Some("5.7.26")
        );
        assert_eq!(find_status("host 192.5.1.1 said"), None);
        assert_eq!(find_status("version 5.5.1960.3"), None);
        assert_eq!(find_status("(#5.1.1)"), Some("5.1.1"));
        assert_eq!(find_status("5.4.316 Message expired"), Some("5.4.316"));
    }

    #[test]
    fn reply_code_prefers_the_one_before_a_status() {
        assert_eq!(find_reply_code("smtp; 550 5.1.1 user unknown"), Some(550));
        assert_eq!(
            find_reply_code("said: 550\n    5.2.2 <x>... full"),
            Some(550)
        );
        assert_eq!(find_reply_code("host [192.0.2.1]: 554 bad"), Some(554));
        assert_eq!(find_reply_code("ResponseCode 421, , Host"), Some(421));
        assert_eq!(find_reply_code("id 1234 5678"), None);
        assert_eq!(find_reply_code("call 555-1234"), None);
    }

    #[test]
    fn failures_win_over_the_successes_of_a_transcript() {
        let t = " Out: 250 2.1.5 Ok\n In: DATA\n Out: 354 End data\n Out: 451 4.3.0 Error: queue file write error\n";
        assert_eq!(find_failure_status(t), Some("4.3.0"));
        assert_eq!(find_failure_reply_code(t), Some(451));
        assert_eq!(find_failure_status("Status: 2.0.0"), Some("2.0.0"));
        assert_eq!(find_failure_reply_code("250 ok"), Some(250));
        assert_eq!(find_failure_status("no code"), None);
    }
}
