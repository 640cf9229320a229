//! Finding e-mail addresses in free text (notices quote them bare, in <>, in quotes, after
//! "RCPT TO:" ...). Deliberately loose: RFC 5321 §4.1.2 dot-atom local parts and domains
//! with at least one dot.

/// An address found in text: its byte offset and the lower-cased address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub at: usize,
    pub address: String,
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b".!#$%&'*+-/=?^_`{|}~".contains(&c)
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// Every address in `text`, in order (at most `max`).
pub(crate) fn find_all(text: &str, max: usize) -> Vec<Found> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut search = 0;
    while let Some(rel) = memchr_at(b, search) {
        let at = search + rel;
        search = at + 1;
        if let Some(f) = address_around(text, at) {
            search = f.at + f.address.len();
            out.push(f);
            if out.len() >= max {
                break;
            }
        }
    }
    out
}

fn memchr_at(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == b'@')
}

fn address_around(text: &str, at: usize) -> Option<Found> {
    let b = text.as_bytes();
    let mut start = at;
    while start > 0 && is_local(b[start - 1]) && at - start < 64 {
        start -= 1;
    }
    let mut end = at + 1;
    while end < b.len() && is_domain(b[end]) && end - at < 255 {
        end += 1;
    }
    while start < at && matches!(b[start], b'.' | b'|' | b'\'' | b'=' | b'`' | b'{') {
        start += 1;
    }
    while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = text.get(at + 1..end)?;
    if start == at || !domain.contains('.') || domain.starts_with('.') || domain.contains("..") {
        return None;
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    if tld.len() < 2 || tld.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(Found {
        at: start,
        address: text.get(start..end)?.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bare_bracketed_and_quoted_addresses() {
        let f = find_all(
            "<a.b@example.com>: said x@y.org. and 'q@z.co.jp' not user@localhost",
            10,
        );
        let a: Vec<_> = f.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(a, ["a.b@example.com", "x@y.org", "q@z.co.jp"]);
    }

    #[test]
    fn message_ids_with_numeric_tails_are_not_addresses() {
        assert!(find_all("id 123@192.0.2.1", 10).is_empty());
    }
}
