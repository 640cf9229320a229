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
        // One buffer for the whole field: a String per result joined at the end was a
        // tenth of a percent of the session's CPU in allocations alone (issue 13).
        let mut out = String::with_capacity(256);
        out.push_str(NAME);
        out.push_str(": ");
        push_sanitized(&mut out, authserv_id);
        out.push(';');
        let empty = out.len();
        // Each result on its own folded line; `;` between them.
        let next = |out: &mut String| {
            if out.len() > empty {
                out.push(';');
            }
            out.push_str("\r\n\t");
        };
        for spf in [&self.spf_mail_from, &self.spf_helo].into_iter().flatten() {
            let ptype = match spf.identity {
                SpfIdentity::MailFrom => "smtp.mailfrom",
                SpfIdentity::Helo => "smtp.helo",
            };
            next(&mut out);
            let _ = write!(out, "spf={} {ptype}=", spf.result);
            push_pvalue(&mut out, &spf.subject);
        }
        for d in &self.dkim {
            next(&mut out);
            let _ = write!(out, "dkim={}", d.result);
            comment(&mut out, d.reason.as_deref());
            if !d.domain.is_empty() {
                out.push_str(" header.d=");
                push_pvalue(&mut out, &d.domain);
                out.push_str(" header.s=");
                push_pvalue(&mut out, &d.selector);
                if !d.b_prefix.is_empty() {
                    out.push_str(" header.b=");
                    push_pvalue(&mut out, &d.b_prefix);
                }
            }
        }
        if let Some(d) = &self.dmarc {
            next(&mut out);
            let _ = write!(out, "dmarc={}", d.result);
            if quarantined {
                let _ = write!(out, " (p={} dis=quarantine)", d.policy.as_str());
            } else if d.policy_known
                && (d.result != AuthResult::None || d.policy != DmarcPolicy::None)
            {
                let _ = write!(out, " (p={})", d.policy.as_str());
            }
            if !d.header_from.is_empty() {
                out.push_str(" header.from=");
                push_pvalue(&mut out, &d.header_from);
            }
        }
        if let Some(a) = &self.arc {
            next(&mut out);
            let _ = write!(out, "arc={}", a.result);
            comment(&mut out, a.reason.as_deref());
        }
        if let Some(i) = &self.iprev {
            next(&mut out);
            let _ = write!(out, "iprev={}", i.result);
            comment(&mut out, i.reason.as_deref());
            out.push_str(" policy.iprev=");
            push_pvalue(&mut out, &self.peer_ip.to_string());
            comment(&mut out, i.ptr.as_deref());
        }
        if out.len() == empty {
            out.push_str(" none");
        }
        out.push_str("\r\n");
        out
    }
}

/// ` (text)`, sanitized; nothing when the text is absent or sanitizes to nothing.
fn comment(out: &mut String, text: Option<&str>) {
    let Some(t) = text else { return };
    let before = out.len();
    out.push_str(" (");
    if push_sanitized(out, t) {
        out.push(')');
    } else {
        out.truncate(before);
    }
}

/// Appends `s` as printable ASCII without comment or quote delimiters (safe inside `( )`
/// and as an id), trimmed; false when nothing was left to append.
fn push_sanitized(out: &mut String, s: &str) -> bool {
    let start = out.len();
    out.extend(s.chars().map(|c| match c {
        '(' | ')' | '\\' | '"' => ' ',
        c if c.is_ascii_graphic() || c == ' ' => c,
        _ => '?',
    }));
    let end = start + out[start..].trim_end().len();
    out.truncate(end);
    let lead = out[start..].len() - out[start..].trim_start().len();
    out.drain(start..start + lead);
    out.len() > start
}

#[cfg(test)]
fn pvalue(s: &str) -> String {
    let mut out = String::new();
    push_pvalue(&mut out, s);
    out
}

/// RFC 8601 §2.2 pvalue: bare when it is a token or `local@domain` of atext, else a
/// quoted-string.
fn push_pvalue(out: &mut String, s: &str) {
    let bare = !s.is_empty()
        && s.matches('@').count() <= 1
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.@".contains(c));
    if bare {
        out.push_str(s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
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

    fn every_method(quarantine: bool) -> AuthVerdict {
        use super::super::verdict::*;
        let spf = |identity, subject: &str| SpfCheck {
            identity,
            result: AuthResult::Pass,
            subject: subject.into(),
            domain: "client.test".into(),
        };
        AuthVerdict {
            peer_ip: "2001:db8::1".parse().unwrap(),
            spf_helo: Some(spf(SpfIdentity::Helo, "mx.client.test")),
            spf_mail_from: Some(spf(SpfIdentity::MailFrom, "a b@client.test")),
            dkim: vec![
                DkimCheck {
                    result: AuthResult::Fail,
                    domain: "client.test".into(),
                    selector: "s1".into(),
                    b_prefix: "AbCd+/Ef".into(),
                    reason: Some(" (body hash)\tdid not verify ".into()),
                },
                DkimCheck {
                    result: AuthResult::None,
                    domain: String::new(),
                    selector: String::new(),
                    b_prefix: String::new(),
                    reason: Some("()".into()),
                },
            ],
            dmarc: Some(DmarcCheck {
                result: AuthResult::Fail,
                header_from: "client.test".into(),
                policy: if quarantine {
                    DmarcPolicy::Quarantine
                } else {
                    DmarcPolicy::Reject
                },
                policy_known: true,
                spf_aligned: false,
                dkim_aligned: false,
                reason: None,
            }),
            arc: Some(ArcCheck {
                result: AuthResult::None,
                sets: 0,
                reason: None,
            }),
            iprev: Some(IprevCheck {
                result: AuthResult::Pass,
                ptr: Some("mx.client.test".into()),
                reason: None,
            }),
        }
    }

    #[test]
    fn the_field_folds_one_result_per_line() {
        assert_eq!(
            every_method(false).header(" (mx.example.test) ", false),
            "Authentication-Results: mx.example.test;\r\n\t\
             spf=pass smtp.mailfrom=\"a b@client.test\";\r\n\t\
             spf=pass smtp.helo=mx.client.test;\r\n\t\
             dkim=fail (body hash ?did not verify) header.d=client.test header.s=s1 header.b=AbCd+/Ef;\r\n\t\
             dkim=none;\r\n\t\
             dmarc=fail (p=reject) header.from=client.test;\r\n\t\
             arc=none;\r\n\t\
             iprev=pass policy.iprev=\"2001:db8::1\" (mx.client.test)\r\n"
        );
        let quarantined = every_method(true).header("mx.example.test", true);
        assert!(
            quarantined.contains(
                ";\r\n\tdmarc=fail (p=quarantine dis=quarantine) header.from=client.test;\r\n"
            ),
            "{quarantined}"
        );
        let none = AuthVerdict::unchecked("192.0.2.1".parse().unwrap());
        assert_eq!(
            none.header("mx.example.test", false),
            "Authentication-Results: mx.example.test; none\r\n"
        );
    }

    #[test]
    fn pvalues_are_quoted_only_when_needed() {
        assert_eq!(pvalue("alice@client.test"), "alice@client.test");
        assert_eq!(pvalue("2001:db8::1"), "\"2001:db8::1\"");
        assert_eq!(pvalue("a b\"c"), "\"a b\\\"c\"");
    }
}
