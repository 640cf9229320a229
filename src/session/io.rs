//! Buffered connection under a session: one read buffer shared by command lines and message
//! data, one write buffer for replies. Kept apart from `mod.rs` so the session loop reads
//! as protocol, not byte shuffling.
//!
//! PIPELINING (RFC 2920): replies are queued and written only when the session is about to
//! wait for input ([`Conn::fill`] flushes first), so a pipelined group gets its replies
//! in order, in one write, and a lone command is answered at once.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::command::{LineReader, Scan};
use crate::reply::Reply;

/// Read granularity; the buffer holds at most one command line plus one read.
const READ_CHUNK: usize = 16 * 1024;

/// What the command reader found.
#[derive(Debug)]
pub(crate) enum Input {
    Line(Vec<u8>),
    /// A line over `smtp.max_line_bytes` ended; it was discarded.
    TooLong,
    Eof,
    /// The server is shutting down and no command is pending.
    Shutdown,
}

pub(crate) struct Conn<S> {
    io: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    lines: LineReader,
    /// Bound on each write: a peer that stops reading cannot hold the session forever.
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S, max_line: usize, write_timeout: Duration) -> Conn<S> {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
            lines: LineReader::new(max_line),
            write_timeout,
        }
    }

    /// Input received but not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.rbuf.advance(n.min(self.rbuf.len()));
    }

    /// Gives the stream back for the TLS handshake. Buffered plaintext input is dropped
    /// here: RFC 3207 §6 — commands pipelined behind STARTTLS must not survive the
    /// upgrade (CVE-2011-0411 command injection).
    pub(crate) fn into_inner(self) -> S {
        self.io
    }

    /// The next complete command line already buffered, if any.
    pub(crate) fn take_line(&mut self) -> Option<Input> {
        loop {
            match self.lines.scan(&self.rbuf) {
                Scan::NeedMore { discard } if discard > 0 => {
                    self.rbuf.advance(discard);
                }
                Scan::NeedMore { .. } => return None,
                Scan::Line { len } => return Some(Input::Line(self.rbuf.split_to(len).to_vec())),
                Scan::TooLong { consumed } => {
                    self.rbuf.advance(consumed);
                    return Some(Input::TooLong);
                }
            }
        }
    }

    pub(crate) fn queue_reply(&mut self, reply: &Reply) {
        reply.write_wire(&mut self.wbuf);
    }

    /// Writes every queued reply.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
        self.wbuf.clear();
        Ok(())
    }

    /// Flushes queued replies, then reads more input. `Ok(0)` is end of stream; past
    /// `deadline` the error kind is `TimedOut`.
    pub(crate) async fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        self.flush().await?;
        self.read_more(deadline).await
    }

    /// Reads more input (no flush). Cancel-safe: usable in `select!`.
    pub(crate) async fn read_more(&mut self, deadline: Instant) -> io::Result<usize> {
        self.rbuf.reserve(READ_CHUNK);
        tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))?
    }

    /// Flushes, then closes our side (TLS close_notify included); errors are irrelevant now.
    pub(crate) async fn close(&mut self) {
        if self.flush().await.is_ok() {
            let _ = tokio::time::timeout(self.write_timeout, self.io.shutdown()).await;
        }
    }
}
