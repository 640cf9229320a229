//! Sans-IO command parser: one command line (bytes, with or without its line ending) →
//! [`Command`], or a [`CommandError`] that maps to exactly one reply.
//!
//! Invariants (fuzzed by `fuzz/fuzz_targets/session_command.rs`):
//! - never panics, whatever the bytes;
//! - a RCPT path that could be a relaying trick — source route `<@a,@b:u@x>` (RFC 5321
//!   §4.1.2, obsolete), `%` or `!` hacks, quoted local part, address literal — is
//!   [`CommandError::RelayAttempt`]; it is never interpreted, so it can never be routed;
//! - the returned [`Address`] has a lower-cased domain without a trailing dot.
//!
//! Non-ASCII mailboxes parse here; whether SMTPUTF8 was declared is the verb's check.

use crate::envelope::{Address, ReversePath};

use super::reply::{self, Reply};

/// One parsed SMTP command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 chunk: exactly `size` octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth {
        /// Upper-cased mechanism name.
        mechanism: String,
        /// Initial response (RFC 4954 §4), still base64; `=` means empty.
        initial: Option<String>,
    },
}

/// RFC 1652 / RFC 3030 BODY parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    /// Only with BDAT (RFC 3030 §3); bare CR/LF are then allowed in the content.
    BinaryMime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailFrom {
    pub from: ReversePath,
    /// RFC 1870 declared size.
    pub size: Option<u64>,
    pub body: BodyType,
    /// RFC 6531: the transaction may carry UTF-8 addresses and headers.
    pub smtputf8: bool,
    /// RFC 3461 RET and ENVID (accepted, kept for DSNs).
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// RFC 4954 §5 AUTH= (informational).
    pub auth: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptTo {
    pub to: Address,
    /// RFC 3461 NOTIFY and ORCPT (accepted, kept for DSNs).
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

/// Why a line is not an acceptable command; [`CommandError::reply`] is its one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unrecognized command")]
    Unrecognized,
    #[error("command not implemented")]
    NotImplemented,
    #[error("syntax error in parameters")]
    Syntax,
    #[error("HELO/EHLO without a valid domain")]
    BadHelo,
    #[error("bad recipient address syntax")]
    BadAddress,
    #[error("bad sender address syntax")]
    BadSender,
    #[error("recipient address is a relaying trick")]
    RelayAttempt,
    #[error("unknown MAIL/RCPT parameter")]
    UnknownParameter,
}

impl CommandError {
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => reply::SYNTAX_ERROR,
            CommandError::NotImplemented => reply::NOT_IMPLEMENTED,
            CommandError::Syntax => reply::PARAM_SYNTAX,
            CommandError::BadHelo => reply::BAD_HELO,
            CommandError::BadAddress => reply::BAD_ADDRESS_SYNTAX,
            CommandError::BadSender => reply::BAD_SENDER_SYNTAX,
            CommandError::RelayAttempt => reply::RELAY_DENIED,
            CommandError::UnknownParameter => reply::PARAM_NOT_IMPLEMENTED,
        }
    }

    /// Bounded label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            CommandError::Unrecognized => "unrecognized",
            CommandError::NotImplemented => "not_implemented",
            CommandError::Syntax => "syntax",
            CommandError::BadHelo => "bad_helo",
            CommandError::BadAddress => "bad_address",
            CommandError::BadSender => "bad_sender",
            CommandError::RelayAttempt => "relay_denied",
            CommandError::UnknownParameter => "unknown_parameter",
        }
    }
}

/// Parses one command line. A trailing CRLF (or bare LF) is ignored.
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Controls (CR, NUL, ...) inside a command line are never legitimate and would end
    // up in our Received header (HELO name).
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::Unrecognized);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Unrecognized)?;
    let (verb, args) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim_matches([' ', '\t'])),
        None => (line, ""),
    };
    let no_args = |cmd: Command| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax)
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => helo_arg(args).map(Command::Ehlo),
        "HELO" => helo_arg(args).map(Command::Helo),
        "MAIL" => parse_mail(args).map(Command::Mail),
        "RCPT" => parse_rcpt(args).map(Command::Rcpt),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" if !args.is_empty() => Ok(Command::Vrfy),
        "VRFY" => Err(CommandError::Syntax),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => parse_auth(args),
        "EXPN" | "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" => {
            Err(CommandError::NotImplemented)
        }
        _ => Err(CommandError::Unrecognized),
    }
}

/// RFC 5321 §4.1.1.1: `EHLO SP ( Domain / address-literal )`. Extra words are tolerated
/// (some clients add them) but only the first is kept.
fn helo_arg(args: &str) -> Result<String, CommandError> {
    let name = args.split([' ', '\t']).next().unwrap_or("");
    let ok_char = |c: char| c.is_ascii_graphic() || !c.is_ascii();
    if name.is_empty() || name.len() > 255 || !name.chars().all(ok_char) {
        return Err(CommandError::BadHelo);
    }
    Ok(name.to_string())
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::Syntax)?;
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::Syntax);
    }
    let size = size.parse().map_err(|_| CommandError::Syntax)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax);
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .ok_or(CommandError::Syntax)?
        .to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(CommandError::Syntax);
    }
    Ok(Command::Auth { mechanism, initial })
}

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
        .all(|hop| hop.strip_prefix('@').is_some_and(|d| !d.is_empty()));
    valid.then_some(Path {
        source_route: true,
        mailbox,
    })
}

fn parse_mail(args: &str) -> Result<MailFrom, CommandError> {
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax)?;
    let (path, params) = split_path(rest).ok_or(CommandError::BadSender)?;
    // RFC 5321 §4.1.1.2 / §C: a source route in the reverse-path is accepted and ignored.
    let path = split_source_route(path).ok_or(CommandError::BadSender)?;
    let from = if path.mailbox.is_empty() && !path.source_route {
        ReversePath::Null
    } else {
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
        ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID" | "AUTH", _) => Err(CommandError::Syntax),
        _ => Err(CommandError::UnknownParameter),
    }
}

fn parse_rcpt(args: &str) -> Result<RcptTo, CommandError> {
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax)?;
    let (path, params) = split_path(rest).ok_or(CommandError::BadAddress)?;
    let path = split_source_route(path).ok_or(CommandError::RelayAttempt)?;
    if path.source_route {
        return Err(CommandError::RelayAttempt);
    }
    let to = rcpt_address(path.mailbox)?;
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

/// A forward-path mailbox. Anything that names another host in the local part, or is not a
/// plain domain, is a relaying attempt: refused, never interpreted.
fn rcpt_address(mailbox: &str) -> Result<Address, CommandError> {
    let Some((local, domain)) = mailbox.rsplit_once('@') else {
        return Err(CommandError::BadAddress);
    };
    if local.contains(['%', '!', '"', '@']) || domain.starts_with('[') {
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

/// What [`LineReader::scan`] found at the start of the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No complete line yet; drop the first `discard` bytes (part of an over-long line).
    NeedMore { discard: usize },
    /// A complete line of `len` bytes, its LF included.
    Line { len: usize },
    /// An over-long line ended after `consumed` bytes: answer 500 5.5.2 once for it.
    TooLong { consumed: usize },
}

/// Splits the command stream into lines of at most `max` bytes (line end included).
/// An over-long line is discarded as it arrives, so the buffer never grows past `max`.
#[derive(Clone, Debug)]
pub struct LineReader {
    max: usize,
    overlong: bool,
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader {
            max: max.max(1),
            overlong: false,
        }
    }

    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        match buf.iter().position(|&b| b == b'\n') {
            Some(p) if self.overlong || p + 1 > self.max => {
                self.overlong = false;
                Scan::TooLong { consumed: p + 1 }
            }
            Some(p) => Scan::Line { len: p + 1 },
            None if self.overlong || buf.len() >= self.max => {
                self.overlong = true;
                Scan::NeedMore { discard: buf.len() }
            }
            None => Scan::NeedMore { discard: 0 },
        }
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
