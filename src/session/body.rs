//! Sans-IO message data decoding: DATA (RFC 5321 §4.1.1.4) and BDAT chunks (RFC 3030).
//!
//! Input: the raw bytes after `354` (DATA) or after a `BDAT n` line. Output: the message as
//! it will be stored, CRLF line ends, dot-unstuffed (DATA), or a [`BodyError`].
//!
//! Invariants (fuzzed by `fuzz/fuzz_targets/session_body.rs`):
//! - **only `<CRLF>.<CRLF>` ends DATA.** `\n.\n`, `\r.\r`, `\r\n.\n`, `\n.\r\n` do not: they
//!   are message content. This is what defeats SMTP smuggling (CVE-2023-51766 and
//!   friends): a second message hidden behind a non-standard terminator can never be read
//!   as commands here, whatever an upstream MTA thinks the message boundary is.
//! - **bare LF or bare CR in the content is refused**, with `550 5.6.11` once the real
//!   terminator has been read ([`BodyError::BareNewline`]). We chose rejection over
//!   normalising (Postfix `smtpd_forbid_bare_newline = normalize`): a message we accept
//!   contains only CRLF line ends, so relaying it later (DATA to another MTA) can never
//!   smuggle anything, and a sender with a broken line end learns about it right away
//!   instead of having its message silently changed. `BODY=BINARYMIME` over BDAT is the one
//!   exception: binary content may hold any octet (RFC 3030 §3).
//! - **size cap**: past `max_bytes` the content is still read to its end (so the session
//!   stays in sync with the client) but discarded, then [`BodyError::TooBig`] (`552 5.3.4`).
//! - input may arrive split anywhere: the result is the same for any split.

use crate::reply::{self, Reply};

/// Why a complete message is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("message exceeds the size limit")]
    TooBig,
    #[error("bare LF or bare CR in message data")]
    BareNewline,
}

impl BodyError {
    pub fn reply(&self) -> Reply {
        match self {
            BodyError::TooBig => reply::MESSAGE_TOO_BIG,
            BodyError::BareNewline => reply::BARE_LF,
        }
    }

    pub fn as_label(&self) -> &'static str {
        match self {
            BodyError::TooBig => "too_big",
            BodyError::BareNewline => "bare_newline",
        }
    }
}

/// The message content being collected, over one DATA or several BDAT chunks.
#[derive(Debug)]
pub struct Body {
    bytes: Vec<u8>,
    /// Content octets seen, including discarded ones past the cap.
    size: u64,
    max: u64,
    /// The last content octet was CR (a LF must follow, or it was bare).
    prev_cr: bool,
    bare_newline: bool,
    binary: bool,
}

/// A message's first allocation; larger ones double from here.
const INITIAL_CAPACITY: u64 = 16 * 1024;

impl Body {
    /// `binary`: BODY=BINARYMIME, where bare CR and LF are content, not errors.
    pub fn new(max_bytes: u64, binary: bool) -> Body {
        Body {
            // Room for a typical ERP message plus the header fields prepended to it
            // before storing, so neither grows the buffer: doubling up from empty was
            // ten reallocations per 4 KiB message, 1.9% of the session's CPU (issue 13).
            bytes: Vec::with_capacity(INITIAL_CAPACITY.min(max_bytes) as usize),
            size: 0,
            max: max_bytes,
            prev_cr: false,
            bare_newline: false,
            binary,
        }
    }

    /// Content octets received so far (past the cap too).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends content octets.
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if !self.binary && !self.bare_newline {
            self.scan_line_ends(data);
        }
        self.size = self.size.saturating_add(data.len() as u64);
        if self.size <= self.max {
            self.bytes.extend_from_slice(data);
        } else if !self.bytes.is_empty() {
            // Over the cap: free what we hold; the rest is only counted.
            self.bytes = Vec::new();
        }
    }

    /// Every CR followed by LF, every LF preceded by CR. Jumps from one CR or LF to the
    /// next (memchr) instead of looking at each byte: the text between them cannot matter,
    /// and a byte loop over every body was a tenth of the session's CPU at 100 KiB (issue 13).
    fn scan_line_ends(&mut self, data: &[u8]) {
        let mut prev_cr = self.prev_cr;
        let mut i = 0;
        while i < data.len() {
            if prev_cr {
                if data[i] != b'\n' {
                    self.bare_newline = true;
                    return;
                }
                prev_cr = false;
                i += 1;
                continue;
            }
            let Some(at) = memchr::memchr2(b'\r', b'\n', &data[i..]) else {
                break;
            };
            i += at;
            if data[i] == b'\n' {
                self.bare_newline = true;
                return;
            }
            prev_cr = true;
            i += 1;
        }
        self.prev_cr = prev_cr;
    }

    /// The complete message, or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, BodyError> {
        if self.size > self.max {
            return Err(BodyError::TooBig);
        }
        if self.bare_newline || (self.prev_cr && !self.binary) {
            return Err(BodyError::BareNewline);
        }
        Ok(self.bytes)
    }
}

/// Where the DATA decoder stands relative to line starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just after CRLF (or at the very start): a `.` here is special.
    LineStart,
    /// Inside a line (also after a bare LF, which never starts a line).
    Mid,
    /// Inside a line, after CR.
    Cr,
    /// `CRLF .` seen.
    Dot,
    /// `CRLF . CR` seen.
    DotCr,
    /// `CRLF . CRLF` seen: the message is complete.
    Done,
}

/// DATA content decoder: finds the end, removes dot-stuffing, feeds a [`Body`].
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    body: Body,
}

impl DataDecoder {
    pub fn new(max_bytes: u64) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            body: Body::new(max_bytes, false),
        }
    }

    /// Consumes input. `Some(n)`: the terminating `CRLF.CRLF` ended after `n` bytes of
    /// `input` (what follows is pipelined commands). `None`: all consumed, need more.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while self.state != State::Done {
            let &b = input.get(i)?;
            match self.state {
                State::Mid => {
                    // Fast path: copy the run up to the next CR or LF in one go.
                    let rest = &input[i..];
                    let run = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.body.push(&rest[..run]);
                    i += run;
                    match input.get(i) {
                        Some(b'\r') => self.state = State::Cr,
                        // A bare LF: content (refused at the end), never a line start.
                        Some(_) => self.body.push(b"\n"),
                        None => return None,
                    }
                    i += 1;
                }
                State::Cr => {
                    i += 1;
                    self.state = match b {
                        b'\n' => {
                            self.body.push(b"\r\n");
                            State::LineStart
                        }
                        b'\r' => {
                            self.body.push(b"\r");
                            State::Cr
                        }
                        _ => {
                            self.body.push(&[b'\r', b]);
                            State::Mid
                        }
                    };
                }
                State::LineStart if b == b'.' => {
                    i += 1;
                    self.state = State::Dot;
                }
                // RFC 5321 §4.5.2: a leading dot followed by more text is removed; the
                // byte after it is ordinary content, handled by `Mid`.
                State::Dot if b == b'\r' => {
                    i += 1;
                    self.state = State::DotCr;
                }
                State::DotCr if b == b'\n' => {
                    i += 1;
                    self.state = State::Done;
                }
                // `CRLF . CR x`: the dot was stuffing, the CR is content.
                State::DotCr => self.state = State::Cr,
                State::LineStart | State::Dot => self.state = State::Mid,
                State::Done => {}
            }
        }
        Some(i)
    }

    /// True once the terminator has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Content octets so far.
    pub fn size(&self) -> u64 {
        self.body.size()
    }

    pub fn finish(self) -> Result<Vec<u8>, BodyError> {
        self.body.finish()
    }
}

/// One BDAT chunk: exactly `size` octets, whatever they contain (RFC 3030 §2).
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    remaining: u64,
}

impl Chunk {
    pub fn new(size: u64) -> Chunk {
        Chunk { remaining: size }
    }

    /// Moves up to the rest of the chunk from `input` into `body` (`None`: discard it).
    /// `Some(n)`: the chunk ended after `n` bytes of `input`. `None`: all consumed.
    pub fn feed(&mut self, input: &[u8], body: Option<&mut Body>) -> Option<usize> {
        let take = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        if let Some(body) = body {
            body.push(&input[..take]);
        }
        self.remaining -= take as u64;
        (self.remaining == 0).then_some(take)
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
