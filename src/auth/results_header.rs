//! RFC 8601 `Authentication-Results`: writing ours, removing forged ones.
//!
//! Order in the session: verify the message as received, then
//! [`strip_forged_results`], then prepend [`AuthVerdict::header`] — so a signature that
//! covered a (forged) results header is still judged on the bytes the sender signed.

use std::fmt::Write as _;

use super::verdict::{AuthResult, AuthVerdict, DmarcPolicy, SpfIdentity};
use crate::message;

const NAME: &str = "Authentication-Results";

impl AuthVerdict {
    /// The full header field, folded one result per line, CRLF-terminated:
    ///
    /// ```text
    /// Authentication-Results: mx.example.test;
    ///     spf=pass smtp.mailfrom=alice@client.test;
    ///     dkim=pass header.d=client.test header.s=s1 header.b=AbCdEfGh;
    ///     dmarc=pass (p=reject) header.from=client.test
    /// ```
    ///
    /// `quarantined` adds `dis=quarantine` to the DMARC comment (as Gmail writes it): the
    /// message was delivered although its DMARC check failed.
    pub fn header(&self, authserv_id: &str, quarantined: bool) -> String {
        let mut results: Vec<String> = Vec::new();
        for spf in [&self.spf_mail_from, &self.spf_helo].into_iter().flatten() {
            let ptype = match spf.identity {
                SpfIdentity::MailFrom => "smtp.mailfrom",
                SpfIdentity::Helo => "smtp.helo",
            };
            results.push(format!(
                "spf={} {ptype}={}",
                spf.result,
                pvalue(&spf.subject)
            ));
        }
        for d in &self.dkim {
            let mut r = format!("dkim={}", d.result);
            comment(&mut r, d.reason.as_deref());
            if !d.domain.is_empty() {
                let _ = write!(
                    r,
                    " header.d={} header.s={}",
                    pvalue(&d.domain),
                    pvalue(&d.selector)
                );
                if !d.b_prefix.is_empty() {
                    let _ = write!(r, " header.b={}", pvalue(&d.b_prefix));
                }
            }
            results.push(r);
        }
        if let Some(d) = &self.dmarc {
            let mut r = format!("dmarc={}", d.result);
            if quarantined {
                let _ = write!(r, " (p={} dis=quarantine)", d.policy.as_str());
            } else if d.policy_known
                && (d.result != AuthResult::None || d.policy != DmarcPolicy::None)
            {
                let _ = write!(r, " (p={})", d.policy.as_str());
            }
            if !d.header_from.is_empty() {
                let _ = write!(r, " header.from={}", pvalue(&d.header_from));
            }
            results.push(r);
        }
        if let Some(a) = &self.arc {
            let mut r = format!("arc={}", a.result);
            comment(&mut r, a.reason.as_deref());
            results.push(r);
        }
        if let Some(i) = &self.iprev {
            let mut r = format!("iprev={}", i.result);
            comment(&mut r, i.reason.as_deref());
            let _ = write!(r, " policy.iprev={}", pvalue(&self.peer_ip.to_string()));
            comment(&mut r, i.ptr.as_deref());
            results.push(r);
        }
        let id = sanitize(authserv_id);
        if results.is_empty() {
            return format!("{NAME}: {id}; none\r\n");
        }
        format!("{NAME}: {id};\r\n\t{}\r\n", results.join(";\r\n\t"))
    }
}

fn comment(out: &mut String, text: Option<&str>) {
    if let Some(t) = text.map(sanitize).filter(|t| !t.is_empty()) {
        let _ = write!(out, " ({t})");
    }
}

/// Printable ASCII without comment or quote delimiters: safe inside `( )` and as an id.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '(' | ')' | '\\' | '"' => ' ',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// RFC 8601 §2.2 pvalue: bare when it is a token or `local@domain` of atext, else a
/// quoted-string.
fn pvalue(s: &str) -> String {
    let bare = !s.is_empty()
        && s.matches('@').count() <= 1
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.@".contains(c));
    if bare {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_control() => q.push('?'),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The header field that carries our verdict to the ERP, on top of every inbound message.
pub const ERP_FIELD: &str = "X-Mxgate-Auth";

/// RFC 8601 §5: removes every `Authentication-Results` field in the header section that
/// claims `authserv_id` (case-insensitively) — results from outside saying they are ours —
/// and every `X-Mxgate-Auth` field (only mxgate writes that one, on top of the message).
/// Other fields, other authserv-ids and the body are returned byte for byte.
/// Takes the message by value: nearly all mail has nothing to strip and is returned as
/// it came, with no copy of its body (issue 13).
pub fn strip_forged_results(raw: Vec<u8>, authserv_id: &str) -> Vec<u8> {
    let (head, rest) = message::split(&raw);
    let forged = |f: &message::Field<'_>| claims(f, authserv_id) || f.is(ERP_FIELD);
    if !message::fields(head).any(|f| forged(&f)) {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len());
    for field in message::fields(head).filter(|f| !forged(f)) {
        out.extend_from_slice(field.raw);
    }
    out.extend_from_slice(rest);
    out
}

/// The value of `X-Mxgate-Auth` when it is the message's first header field — where the
/// inbound session puts it, above its own Received (anything from outside sits below that,
/// and is removed anyway). Unfolded, trimmed. Used for the ERP push header.
pub fn erp_header_of(raw: &[u8]) -> Option<String> {
    let field = message::fields(message::header_section(raw)).next()?;
    if !field.is(ERP_FIELD) {
        return None;
    }
    let value = String::from_utf8_lossy(field.value());
    let value: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
    (!value.is_empty()).then_some(value)
}

fn claims(field: &message::Field<'_>, authserv_id: &str) -> bool {
    if !field.is(NAME) {
        return false;
    }
    let value = String::from_utf8_lossy(field.value());
    let id = first_token(&value);
    let ours = authserv_id.trim().trim_end_matches('.');
    !id.is_empty() && id.trim_end_matches('.').eq_ignore_ascii_case(ours)
}

/// The authserv-id: the first token after leading whitespace and (nested) comments.
fn first_token(value: &str) -> &str {
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in value.char_indices() {
        match (start, c) {
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 && !c.is_whitespace() => start = Some(i),
            (Some(s), c) if c.is_whitespace() || c == ';' || c == '(' => return &value[s..i],
            _ => {}
        }
    }
    start.map_or("", |s| value[s..].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_for_our_id_are_removed_and_others_kept() {
        let raw = b"Received: from x\r\nAuthentication-Results: MX.example.test;\r\n dkim=pass header.d=bank.test\r\nauthentication-results: (c) mx.example.test 1; spf=pass\r\nAuthentication-Results: other.test; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.test; body stays\r\n";
        let out = strip_forged_results(raw.to_vec(), "mx.example.test");
        let s = String::from_utf8(out).expect("ascii");
        assert_eq!(
            s,
            "Received: from x\r\nAuthentication-Results: other.test; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.test; body stays\r\n"
        );
    }

    #[test]
    fn erp_field_is_read_from_the_top_only_and_foreign_ones_are_stripped() {
        let raw = b"X-Mxgate-Auth: spf=pass\r\n dkim=none\r\nReceived: x\r\nX-Mxgate-Auth: forged\r\n\r\nbody";
        assert_eq!(erp_header_of(raw).as_deref(), Some("spf=pass dkim=none"));
        assert_eq!(
            erp_header_of(b"Received: x\r\nX-Mxgate-Auth: forged\r\n\r\n"),
            None
        );
        assert_eq!(erp_header_of(b""), None);
        let out = strip_forged_results(
            b"x-mxgate-auth: dmarc=pass\r\nSubject: s\r\n\r\nb".to_vec(),
            "mx.test",
        );
        assert_eq!(out, b"Subject: s\r\n\r\nb");
    }

    #[test]
    fn stripping_never_panics_on_odd_input() {
        for raw in [
            &b""[..],
            b"\r\n",
            b":",
            b"Authentication-Results:",
            b"a\n b\n\n",
            b"x: (((",
            b"\n\n\n",
        ] {
            let _ = strip_forged_results(raw.to_vec(), "mx.example.test");
        }
        let raw = b"Authentication-Results: mx.example.test";
        assert!(strip_forged_results(raw.to_vec(), "mx.example.test").is_empty());
        let clean = b"Subject: s\r\nAuthentication-Results: other.test; spf=pass\r\n\r\nb";
        assert_eq!(
            strip_forged_results(clean.to_vec(), "mx.example.test"),
            clean
        );
    }

    #[test]
    fn pvalues_are_quoted_only_when_needed() {
        assert_eq!(pvalue("alice@client.test"), "alice@client.test");
        assert_eq!(pvalue("2001:db8::1"), "\"2001:db8::1\"");
        assert_eq!(pvalue("a b\"c"), "\"a b\\\"c\"");
    }
}
