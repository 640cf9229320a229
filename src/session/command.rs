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
//!
//! MAIL and RCPT arguments (paths, relaying-trick detection, ESMTP parameters) are in
//! [`mail_rcpt`]; this file keeps the command types, the verb dispatch and the line
//! splitter.

mod mail_rcpt;
pub mod mailbox;

use crate::envelope::{Address, ReversePath};

use crate::reply::{self, Reply};
use mail_rcpt::{parse_mail, parse_rcpt};

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

/// RFC 1652 / RFC 3030 BODY parameter (stored with the message, hence defined there).
pub use crate::envelope::esmtp::BodyType;

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
    /// RFC 8689 REQUIRETLS (the verb checks that it was offered, i.e. TLS is on).
    pub requiretls: bool,
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
    // up in our Received header (HELO name). In MAIL/RCPT they are in the address: 501 5.1.3.
    let bad = if has_verb(line, b"MAIL") || has_verb(line, b"RCPT") {
        CommandError::BadAddress
    } else {
        CommandError::Unrecognized
    };
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad);
    }
    let line = std::str::from_utf8(line).map_err(|_| bad)?;
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

/// `line` starts with `verb` (any case) followed by a space or tab.
fn has_verb(line: &[u8], verb: &[u8]) -> bool {
    line.len() > verb.len()
        && line[..verb.len()].eq_ignore_ascii_case(verb)
        && matches!(line[verb.len()], b' ' | b'\t')
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
