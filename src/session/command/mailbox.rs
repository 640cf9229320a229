//! RFC 5321 §4.1.2 mailbox syntax, checked before anything looks at what the address means.
//!
//! `Mailbox = Local-part "@" ( Domain / address-literal )`, `Local-part = Dot-string /
//! Quoted-string`. A path that fails here is `501 5.1.3` on MAIL and RCPT alike (issue 16
//! item 4), so a malformed address never reaches routing or the relay decision: `a@b@c`
//! is a syntax error, not a relaying attempt. What passes is only *well-formed*; whether a
//! quoted local part, `%`/`!` or an address literal is acceptable is the verb's policy.
//!
//! Sans-IO and fuzzed (`fuzz/fuzz_targets/address_parse.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A syntactically valid mailbox, split; the parts borrow the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// Verbatim, quotes included when [`Mailbox::quoted`].
    pub local: &'a str,
    pub quoted: bool,
    /// Verbatim, brackets included when [`Mailbox::literal`].
    pub domain: &'a str,
    pub literal: bool,
}

/// Splits and checks `mailbox` (no angle brackets); `None` when it is not RFC 5321 syntax.
/// UTF-8 in the local part and domain is allowed (RFC 6531 §3.3); SMTPUTF8 is the verb's check.
pub fn check(mailbox: &str) -> Option<Mailbox<'_>> {
    let (local, quoted) = if mailbox.starts_with('"') {
        (&mailbox[..quoted_string_len(mailbox)?], true)
    } else {
        (&mailbox[..mailbox.find('@')?], false)
    };
    let domain = mailbox[local.len()..].strip_prefix('@')?;
    if !quoted && !is_dot_string(local) {
        return None;
    }
    let literal = domain.starts_with('[');
    let ok = if literal {
        is_address_literal(domain)
    } else {
        is_domain(domain)
    };
    ok.then_some(Mailbox {
        local,
        quoted,
        domain,
        literal,
    })
}

/// Length of the leading `"..."` (qtextSMTP / quoted-pairSMTP), quotes included.
fn quoted_string_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped && (c == ' ' || c.is_ascii_graphic()) => escaped = false,
            _ if escaped => return None,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            // qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531).
            c if c == ' ' || c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()) => {}
            _ => return None,
        }
    }
    None
}

/// `Dot-string = Atom *("." Atom)`, Atom = 1*atext (RFC 5322 atext, UTF-8 per RFC 6531).
fn is_dot_string(s: &str) -> bool {
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control())
    };
    !s.is_empty() && s.split('.').all(|a| !a.is_empty() && a.chars().all(atext))
}

/// `Domain = sub-domain *("." sub-domain)`; a trailing dot (the DNS root) is tolerated, as
/// every MTA does. U-labels are allowed (RFC 6531).
pub(super) fn is_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    let label_char =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control());
    !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(label_char)
        })
}

/// RFC 5321 §4.1.3: `[IPv4]` or `[IPv6:addr]`. No General-address-literal tag other than
/// IPv6 is registered, so any other `[tag:...]` is malformed.
fn is_address_literal(d: &str) -> bool {
    let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_mailboxes_pass_and_are_split() {
        let m = check("a.b+c@Example.Test.").expect("valid");
        assert_eq!(
            (m.local, m.domain, m.quoted, m.literal),
            ("a.b+c", "Example.Test.", false, false)
        );
        let m = check("\"a@b\\\" c\"@x.test").expect("quoted");
        assert_eq!(
            (m.local, m.domain, m.quoted),
            ("\"a@b\\\" c\"", "x.test", true)
        );
        assert!(check("u@[192.0.2.1]").expect("v4").literal);
        assert!(check("u@[IPv6:2001:db8::1]").is_some());
        assert!(
            check("user%other@x.test").is_some(),
            "% is atext; policy refuses it"
        );
        assert!(check("jösé@exämple.test").is_some());
    }

    #[test]
    fn malformed_mailboxes_fail() {
        for bad in [
            "a@b@c.test",
            "@x.test",
            "a@",
            "a",
            "",
            ".a@x.test",
            "a.@x.test",
            "a..b@x.test",
            "a b@x.test",
            "a@x..test",
            "a@-x.test",
            "a@x_y.test",
            "a@[192.0.2]",
            "a@[192.0.2.256]",
            "a@[IPv6:zz::1]",
            "a@[foo]",
            "a@[192.0.2.1",
            "a@192.0.2.1]",
            "a@[192.0.2.1]x",
            "\"a@x.test",
            "\"a\"b@x.test",
            "a\u{1}b@x.test",
            "\"a\u{7f}\"@x.test",
            "a@x\u{0}.test",
            "a<b@x.test",
            "a@x.test>",
        ] {
            assert_eq!(check(bad), None, "{bad:?}");
        }
    }
}
