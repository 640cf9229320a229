//! MAIL FROM and RCPT TO arguments: `KEYWORD:`, the `<path>` (source route, quoting),
//! the mailbox, and the ESMTP parameters (RFC 5321 §4.1.2, RFC 1870, 1652, 3030, 3461,
//! 4954, 6531, 8689).
//!
//! Split from the verb dispatch in `command.rs` because this is where the parser's security
//! rule lives: a forward path that could be a relaying trick is
//! [`CommandError::RelayAttempt`], never interpreted. Still sans-IO, still fuzzed through
//! [`parse`](super::parse).

use crate::envelope::{Address, ReversePath};

use super::{BodyType, CommandError, MailFrom, RcptTo, mailbox};

/// Splits `KEYWORD:` off the argument (`FROM:` / `TO:`), case-insensitive. A space after
/// the colon is tolerated (Postfix's default, RFC 5321 forbids it but many clients send it).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| args[keyword.len()..].trim_start_matches([' ', '\t']))
}

/// Splits `<path> params` at the `>` that closes the path (not one inside a quoted string).
fn split_path(rest: &str) -> Option<(&str, &str)> {
    let inner = rest.strip_prefix('<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let params = &inner[i + 1..];
                if !params.is_empty() && !params.starts_with([' ', '\t']) {
                    return None;
                }
                return Some((&inner[..i], params));
            }
            _ => {}
        }
    }
    None
}

/// What a `<...>` path holds, before it becomes an [`Address`].
struct Path<'a> {
    /// RFC 5321 §4.1.2 obsolete source route (`@a,@b:`) was present.
    source_route: bool,
    mailbox: &'a str,
}

fn split_source_route(path: &str) -> Option<Path<'_>> {
    if !path.starts_with('@') {
        return Some(Path {
            source_route: false,
            mailbox: path,
        });
    }
    let (route, mailbox) = path.split_once(':')?;
    let valid = route
        .split(',')
        .all(|hop| hop.strip_prefix('@').is_some_and(mailbox::is_domain));
    valid.then_some(Path {
        source_route: true,
        mailbox,
    })
}

pub(super) fn parse_mail(args: &str) -> Result<MailFrom, CommandError> {
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax)?;
    let (path, params) = split_path(rest).ok_or(CommandError::BadAddress)?;
    // RFC 5321 §4.1.1.2 / §C: a source route in the reverse-path is accepted and ignored.
    let path = split_source_route(path).ok_or(CommandError::BadAddress)?;
    let from = if path.mailbox.is_empty() && !path.source_route {
        ReversePath::Null
    } else {
        mailbox::check(path.mailbox).ok_or(CommandError::BadAddress)?;
        // Well-formed but a form we do not take as a sender (quoted, `%`, literal): 5.1.7.
        ReversePath::Address(Address::parse(path.mailbox).ok_or(CommandError::BadSender)?)
    };
    let mut mail = MailFrom {
        from,
        size: None,
        body: BodyType::default(),
        smtputf8: false,
        ret: None,
        envid: None,
        auth: None,
        requiretls: false,
    };
    for (key, value) in esmtp_params(params)? {
        mail_param(&mut mail, &key, value)?;
    }
    Ok(mail)
}

fn mail_param(mail: &mut MailFrom, key: &str, value: Option<&str>) -> Result<(), CommandError> {
    fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), CommandError> {
        match slot.replace(v) {
            Some(_) => Err(CommandError::Syntax),
            None => Ok(()),
        }
    }
    match (key, value) {
        ("SIZE", Some(v))
            if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) =>
        {
            // Beyond u64: certainly too big; saturate so the size check refuses it.
            once(&mut mail.size, v.parse().unwrap_or(u64::MAX))
        }
        ("BODY", Some(v)) => {
            mail.body = match v.to_ascii_uppercase().as_str() {
                "7BIT" => BodyType::SevenBit,
                "8BITMIME" => BodyType::EightBitMime,
                "BINARYMIME" => BodyType::BinaryMime,
                _ => return Err(CommandError::Syntax),
            };
            Ok(())
        }
        ("SMTPUTF8", None) => {
            mail.smtputf8 = true;
            Ok(())
        }
        ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS") => {
            once(&mut mail.ret, v.to_ascii_uppercase())
        }
        ("ENVID", Some(v)) if is_xtext(v) && v.len() <= 100 => once(&mut mail.envid, v.to_string()),
        ("AUTH", Some(v)) if is_xtext(v) => once(&mut mail.auth, v.to_string()),
        ("REQUIRETLS", None) if !mail.requiretls => {
            mail.requiretls = true;
            Ok(())
        }
        ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID" | "AUTH" | "REQUIRETLS", _) => {
            Err(CommandError::Syntax)
        }
        _ => Err(CommandError::UnknownParameter),
    }
}

pub(super) fn parse_rcpt(args: &str) -> Result<RcptTo, CommandError> {
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax)?;
    let (path, params) = split_path(rest).ok_or(CommandError::BadAddress)?;
    let path = split_source_route(path).ok_or(CommandError::BadAddress)?;
    // Syntax first (501), then the source route as a relaying trick (550).
    let to = rcpt_address(path.mailbox)?;
    if path.source_route {
        return Err(CommandError::RelayAttempt);
    }
    let mut rcpt = RcptTo {
        to,
        notify: None,
        orcpt: None,
    };
    for (key, value) in esmtp_params(params)? {
        let slot = match (key.as_str(), value) {
            ("NOTIFY", Some(v)) if is_notify(v) => &mut rcpt.notify,
            ("ORCPT", Some(v)) if v.contains(';') && is_xtext(v) => &mut rcpt.orcpt,
            ("NOTIFY" | "ORCPT", _) => return Err(CommandError::Syntax),
            _ => return Err(CommandError::UnknownParameter),
        };
        if slot
            .replace(value.unwrap_or_default().to_string())
            .is_some()
        {
            return Err(CommandError::Syntax);
        }
    }
    Ok(rcpt)
}

/// A forward-path mailbox. Malformed is `501 5.1.3` first; a well-formed one that names
/// another host in the local part, or is not a plain domain, is a relaying attempt:
/// refused, never interpreted.
fn rcpt_address(mailbox: &str) -> Result<Address, CommandError> {
    let m = mailbox::check(mailbox).ok_or(CommandError::BadAddress)?;
    if m.quoted || m.literal || m.local.contains(['%', '!']) {
        return Err(CommandError::RelayAttempt);
    }
    Address::parse(mailbox).ok_or(CommandError::BadAddress)
}

/// RFC 3461 §4.1: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY.
fn is_notify(v: &str) -> bool {
    v.eq_ignore_ascii_case("NEVER")
        || v.split(',').all(|w| {
            ["SUCCESS", "FAILURE", "DELAY"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        })
}

/// RFC 3461 §4: xtext is printable ASCII except `+` escapes and `=`.
fn is_xtext(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'=')
}

/// ESMTP parameters `KEY[=VALUE]`, keys upper-cased (RFC 5321 §4.1.2 esmtp-param).
fn esmtp_params(params: &str) -> Result<Vec<(String, Option<&str>)>, CommandError> {
    params
        .split([' ', '\t'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (key, value) = match p.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (p, None),
            };
            let key_ok =
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !key_ok {
                return Err(CommandError::Syntax);
            }
            Ok((key.to_ascii_uppercase(), value))
        })
        .collect()
}
