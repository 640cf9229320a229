//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030), and the end of a transaction: hop count,
//! Received header, [`Queue::enqueue`](crate::queue::Queue::enqueue), final reply.
//!
//! Invariant: the 250 is written only after `enqueue` returned Ok (the message is fsync'd).
//! `enqueue` runs under [`ENQUEUE_DEADLINE`], well inside the client's 10-minute DATA
//! timeout (RFC 5321 §4.5.3.2.6): past it the client gets `451 4.4.2`, never a late 250.
//! (A store that finishes after the deadline may still deliver the message; a duplicate
//! on the client's retry is the price of never losing one.)

use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{info, warn};

use super::body::{Body, BodyError, Chunk, DataDecoder};
use super::command::BodyType;
use super::io::Conn;
use super::{Session, State, Transaction, prep, scan, verify};
use crate::envelope::esmtp::{Esmtp, MessageParams, Ret};
use crate::envelope::{Destination, ListenerKind, QueueId, Stream};
use crate::queue::NewMessage;
use crate::reply::{self, Reply};

/// How long the store may take before the client is told to retry (KumoMTA uses 60 s too).
const ENQUEUE_DEADLINE: Duration = Duration::from_secs(60);

pub(super) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session,
    conn: &mut Conn<S>,
) -> io::Result<Reply> {
    match &s.state {
        State::Connected => return Ok(reply::NEED_EHLO),
        State::Greeted => return Ok(reply::NEED_MAIL),
        State::Mail(t) if t.chunks.is_some() => return Ok(reply::DATA_AFTER_BDAT),
        State::Mail(t) if t.mail.body == BodyType::BinaryMime => {
            return Ok(reply::BINARYMIME_NEEDS_BDAT);
        }
        State::Mail(t) if t.recipients.is_empty() => return Ok(reply::NO_VALID_RECIPIENTS),
        State::Mail(_) => {}
    }
    conn.queue_reply(&reply::START_DATA);
    let mut decoder = DataDecoder::new(s.ctx.config.smtp.max_message_bytes.0);
    let deadline = Instant::now() + s.data_timeout();
    loop {
        let available = conn.buffered().len();
        if let Some(n) = decoder.feed(conn.buffered()) {
            conn.consume(n);
            break;
        }
        conn.consume(available);
        match conn.fill(deadline).await {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Ok(timed_out(s, decoder.size()));
            }
            Err(e) => return Err(e),
        }
    }
    let Some(txn) = take_transaction(s) else {
        return Ok(reply::BAD_SEQUENCE);
    };
    Ok(finish(s, txn, decoder.finish()).await)
}

/// BDAT: the chunk is always read (even when refused) so its bytes are never taken for
/// commands; only then is the command's reply decided.
pub(super) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut Session,
    conn: &mut Conn<S>,
    size: u64,
    last: bool,
) -> io::Result<Reply> {
    let max = s.ctx.config.smtp.max_message_bytes.0;
    let deadline = Instant::now() + s.data_timeout();
    let refusal = match &mut s.state {
        State::Connected => Some(reply::NEED_EHLO),
        State::Greeted => Some(reply::NEED_MAIL),
        State::Mail(t) if t.recipients.is_empty() => Some(reply::NEED_RCPT),
        State::Mail(t) => {
            let binary = t.mail.body == BodyType::BinaryMime;
            t.chunks.get_or_insert_with(|| Body::new(max, binary));
            None
        }
    };
    let mut body = match &mut s.state {
        State::Mail(t) if refusal.is_none() => t.chunks.as_mut(),
        _ => None,
    };
    let mut chunk = Chunk::new(size);
    loop {
        let available = conn.buffered().len();
        if let Some(n) = chunk.feed(conn.buffered(), body.as_deref_mut()) {
            conn.consume(n);
            break;
        }
        conn.consume(available);
        match conn.fill(deadline).await {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(timed_out(s, size)),
            Err(e) => return Err(e),
        }
    }
    if let Some(r) = refusal {
        return Ok(r);
    }
    if !last {
        return Ok(reply::BDAT_CHUNK_OK);
    }
    let Some(mut txn) = take_transaction(s) else {
        return Ok(reply::BAD_SEQUENCE);
    };
    let body = txn.chunks.take().map_or(Ok(Vec::new()), Body::finish);
    Ok(finish(s, txn, body).await)
}

fn take_transaction(s: &mut Session) -> Option<Box<Transaction>> {
    match std::mem::replace(&mut s.state, State::Greeted) {
        State::Mail(txn) => Some(txn),
        other => {
            s.state = other;
            None
        }
    }
}

fn timed_out(s: &Session, bytes: u64) -> Reply {
    info!(bytes, "timeout while receiving message data");
    s.ctx.metrics.inbound_message("tempfail", "data_timeout");
    reply::DATA_TIMEOUT
}

/// The transaction is over (state is back to Greeted): check, store, answer.
async fn finish(s: &mut Session, txn: Box<Transaction>, body: Result<Vec<u8>, BodyError>) -> Reply {
    let metrics = &s.ctx.metrics;
    let content = match body {
        Ok(content) => content,
        Err(e) => {
            info!(error = %e, "message refused");
            metrics.inbound_message("rejected", e.as_label());
            return e.reply();
        }
    };
    let hops = crate::message::received_count(&content);
    if hops > s.ctx.config.smtp.max_hops {
        info!(hops, "mail loop: too many Received headers");
        metrics.inbound_message("rejected", "mail_loop");
        return reply::MAIL_LOOP;
    }
    let mut stream = Stream::Transactional;
    let content = if s.kind == ListenerKind::Inbound {
        content
    } else {
        // The email type (issue 6 item 5): the stream header (removed), else the config.
        let streams = &s.ctx.config.streams;
        let (content, by_header) = prep::take_stream_header(content, &streams.header);
        let by_sender = streams.mass_by_sender(s.peer.user.as_deref(), &txn.mail.from.to_string());
        stream = by_header.unwrap_or(if by_sender {
            Stream::Mass
        } else {
            Stream::Transactional
        });
        let content = match txn.recipients.as_slice() {
            [(to, Destination::Relay)] if stream == Stream::Mass && streams.list_unsubscribe => {
                let token = s.ctx.token_key.issue_unsubscribe(&to.to_string());
                let domain = s.ctx.config.bounce_domain();
                prep::add_list_unsubscribe(content, &streams.unsubscribe_url, domain, &token)
            }
            _ => content,
        };
        match prepare_submission(s, &txn, &content) {
            Ok(prepared) => prepared,
            Err(e) => {
                info!(error = %e, "submitted message refused");
                metrics.inbound_message("rejected", "submission_prep");
                return e.reply();
            }
        }
    };
    // Inbound: sender authentication (X-Mxgate-Auth, Authentication-Results on top).
    let verify::Verified {
        fields: auth_fields,
        content,
        verdict,
    } = match verify::authenticate(s, &txn, content).await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    // Then rspamd, under the id the message will be stored as (X-Spam-* below those).
    let id = QueueId::generate();
    let (spam_fields, content) = match scan::scan(s, &txn, verdict.as_ref(), content, id).await {
        Ok(scanned) => scanned,
        Err(refused) => return refused,
    };
    let mut fields = auth_fields.into_bytes();
    fields.extend_from_slice(spam_fields.as_bytes());
    if let Some(tag) = &s.dnsbl_header {
        fields.extend_from_slice(tag.as_bytes());
    }
    fields.extend_from_slice(received_header(s, &txn).as_bytes());
    let bytes = content.len();
    // In place, not into a new buffer: a second copy of every body held through the fsync
    // wait was most of a session's memory with 100 KiB messages (issue 13).
    let message = prepend(fields, content);
    let esmtp = Esmtp {
        message: MessageParams {
            smtputf8: txn.mail.smtputf8,
            body: txn.mail.body,
            envid: txn.mail.envid.clone(),
            ret: txn.mail.ret.as_deref().and_then(Ret::parse),
            requiretls: txn.mail.requiretls,
        },
        recipients: txn.rcpt_params,
    };
    let msg = NewMessage {
        listener: s.kind,
        peer_ip: s.peer.addr.ip(),
        helo: s.peer.helo.clone().unwrap_or_default(),
        mail_from: txn.mail.from,
        recipients: txn.recipients,
        body: message,
    };
    match tokio::time::timeout(
        ENQUEUE_DEADLINE,
        s.ctx.queue.enqueue_as(id, msg, stream, esmtp),
    )
    .await
    {
        Ok(Ok(id)) => {
            info!(queue_id = %id, bytes, "message queued");
            metrics.inbound_message("accepted", "ok");
            reply::QUEUED.with_text(format!("{} {id}", reply::QUEUED.text))
        }
        Ok(Err(e)) => {
            warn!(error = %crate::error_chain::chain(&e), "enqueue failed");
            metrics.inbound_message("tempfail", "store");
            e.reply()
        }
        Err(_) => {
            warn!(deadline = ?ENQUEUE_DEADLINE, "enqueue timed out");
            metrics.inbound_message("tempfail", "store_timeout");
            reply::STORE_UNAVAILABLE
        }
    }
}

/// `head` then `content`, in `content`'s buffer (the body's spare capacity usually holds the
/// few header fields, so this moves the body once and allocates nothing).
fn prepend(head: Vec<u8>, mut content: Vec<u8>) -> Vec<u8> {
    content.splice(0..0, head);
    content
}

/// Message-ID/Date, header From alignment and DKIM for submitted mail ([`prep`]).
fn prepare_submission(
    s: &Session,
    txn: &Transaction,
    content: &[u8],
) -> Result<Vec<u8>, prep::PrepError> {
    let cfg = &s.ctx.config;
    let domains = s.peer.user.as_ref().and_then(|name| {
        cfg.submission
            .users
            .iter()
            .find(|u| &u.name == name)
            .map(|u| u.domains.as_slice())
    });
    let envelope_from = txn.mail.from.to_string();
    let who = prep::Submitter {
        domains,
        envelope_from: &envelope_from,
    };
    prep::prepare(
        content,
        &cfg.server.hostname,
        cfg.submission.from_alignment,
        &s.ctx.signer,
        &who,
        SystemTime::now(),
    )
}

/// RFC 5321 §4.4 trace header. No rDNS lookup is made, so TCP-info is the address literal
/// alone. Protocol per RFC 3848 (ESMTPS = TLS, ESMTPA = authenticated). `for` only with a
/// single recipient, so one recipient does not learn the others (as Postfix).
fn received_header(s: &Session, txn: &Transaction) -> String {
    let helo = s.peer.helo.as_deref().unwrap_or("unknown");
    let ip = match s.peer.addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("IPv6:{ip}"),
    };
    let host = &s.ctx.config.server.hostname;
    let proto = match (s.esmtp, s.peer.tls, s.peer.user.is_some()) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let for_rcpt = match txn.recipients.as_slice() {
        [(rcpt, _)] => format!("\r\n\tfor <{rcpt}>"),
        _ => String::new(),
    };
    let date = httpdate::fmt_http_date(SystemTime::now()).replace(" GMT", " +0000");
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {host} (mxgate) with {proto}{for_rcpt};\r\n\t{date}\r\n"
    )
}
