//! Submission message preparation (SPEC "Submission"), run once at the end of DATA on the
//! submission listeners, before the message is queued:
//!
//! 1. `Message-ID:` and `Date:` added when missing (RFC 5322 §3.6: both are required, and
//!    ERPs sometimes leave them to the MTA — RFC 6409 §8.2/§8.3 lets the MSA add them);
//! 2. header `From:` alignment with the user's enrolled domains (`[submission]
//!    from_alignment`): DMARC aligns on the header, so a customer's address in `From:` would
//!    fail it. `rewrite` puts the envelope sender there (display name kept, the original in
//!    `Reply-To:` when there is none), `reject` refuses, `off` leaves it;
//! 3. a DKIM signature per key of the `From:` domain ([`Signer`]).
//!
//! Input: the message as received (CRLF, unstuffed). Output: the message to queue.

use std::time::SystemTime;

use crate::auth::sign::{SignError, Signer};
use crate::config::FromAlignment;
use crate::message;
use crate::reply::{self, Reply};

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("header From {0:?} is outside the user's domains")]
    FromNotAllowed(String),
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl PrepError {
    pub fn reply(&self) -> Reply {
        match self {
            PrepError::FromNotAllowed(_) => reply::HEADER_FROM_NOT_ALLOWED,
            PrepError::Sign(_) => reply::LOCAL_ERROR,
        }
    }
}

/// Who submitted: an authenticated user's domains, or `None` for a trusted network.
pub struct Submitter<'a> {
    pub domains: Option<&'a [String]>,
    pub envelope_from: &'a str,
}

/// Prepares `content` (see the module doc).
pub fn prepare(
    content: &[u8],
    hostname: &str,
    alignment: FromAlignment,
    signer: &Signer,
    who: &Submitter<'_>,
    now: SystemTime,
) -> Result<Vec<u8>, PrepError> {
    let (head, body) = message::split(content);
    let mut headers = head.to_vec();
    let mut added = String::new();
    if find(head, "message-id").is_none() {
        added.push_str(&format!(
            "Message-ID: <{}.{}@{hostname}>\r\n",
            crate::envelope::QueueId::generate(),
            rand::random::<u32>()
        ));
    }
    if find(head, "date").is_none() {
        let date = httpdate::fmt_http_date(now).replace(" GMT", " +0000");
        added.push_str(&format!("Date: {date}\r\n"));
    }
    if let (Some(domains), Some((start, end))) = (who.domains, find(head, "from")) {
        let value = String::from_utf8_lossy(&head[start..end]).into_owned();
        let field_value = value.split_once(':').map_or("", |(_, v)| v).trim();
        let domain = address_of(field_value)
            .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()));
        let aligned = domain
            .as_deref()
            .is_some_and(|d| domains.iter().any(|u| u.eq_ignore_ascii_case(d)));
        if !aligned {
            match alignment {
                FromAlignment::Off => {}
                FromAlignment::Reject => {
                    return Err(PrepError::FromNotAllowed(field_value.to_string()));
                }
                FromAlignment::Rewrite => {
                    let display = display_name(field_value);
                    let from = if display.is_empty() {
                        format!("From: <{}>\r\n", who.envelope_from)
                    } else {
                        format!("From: {display} <{}>\r\n", who.envelope_from)
                    };
                    let reply_to = find(head, "reply-to").is_none();
                    let mut rewritten = head[..start].to_vec();
                    rewritten.extend_from_slice(from.as_bytes());
                    if reply_to {
                        rewritten
                            .extend_from_slice(format!("Reply-To: {field_value}\r\n").as_bytes());
                    }
                    rewritten.extend_from_slice(&head[end..]);
                    headers = rewritten;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(content.len() + added.len() + 512);
    out.extend_from_slice(added.as_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(body);
    if let Some(sig) = signer.sign_message(&out)? {
        let mut signed = sig.into_bytes();
        signed.extend_from_slice(&out);
        return Ok(signed);
    }
    Ok(out)
}

/// Byte range of the first header field named `name` (with its folded lines and CRLF).
fn find(head: &[u8], name: &str) -> Option<(usize, usize)> {
    message::find(head, name).map(|f| (f.start, f.end))
}

/// Prepends RFC 8058 one-click unsubscribe headers naming `token` (issue 6 item 6), unless
/// the message already has a `List-Unsubscribe` field.
pub fn add_list_unsubscribe(
    content: Vec<u8>,
    base_url: &str,
    mailto_domain: &str,
    token: &str,
) -> Vec<u8> {
    let (head, _) = message::split(&content);
    if find(head, "list-unsubscribe").is_some() {
        return content;
    }
    let mut out = format!(
        "List-Unsubscribe: <{}/unsubscribe/{token}>,\r\n <mailto:unsubscribe+{token}@{mailto_domain}>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        base_url.trim_end_matches('/')
    )
    .into_bytes();
    out.extend_from_slice(&content);
    out
}

/// Removes every `name:` header field (the `[streams] header`) from `content`; returns the
/// message without it and the stream the last one named (`None`: absent or unknown value).
pub fn take_stream_header(
    content: Vec<u8>,
    name: &str,
) -> (Vec<u8>, Option<crate::envelope::Stream>) {
    let (head, _) = message::split(&content);
    let head_len = head.len();
    let mut stream = None;
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while let Some((start, end)) = find(&content[pos..head_len], name) {
        let (start, end) = (pos + start, pos + end);
        let field = String::from_utf8_lossy(&content[start..end]);
        let value = field.split_once(':').map_or("", |(_, v)| v);
        stream = crate::envelope::Stream::parse(value).or(stream);
        cut.push((start, end));
        pos = end;
    }
    if cut.is_empty() {
        return (content, None);
    }
    let mut out = Vec::with_capacity(content.len());
    let mut from = 0;
    for (start, end) in cut {
        out.extend_from_slice(&content[from..start]);
        from = end;
    }
    out.extend_from_slice(&content[from..]);
    (out, stream)
}

/// The address of a From value: inside `<...>`, else the bare value.
fn address_of(value: &str) -> Option<String> {
    let v = value.replace(['\r', '\n'], "");
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].trim().to_string(),
        _ => v.trim().to_string(),
    };
    addr.contains('@').then_some(addr)
}

fn display_name(value: &str) -> String {
    let v = value.replace(['\r', '\n'], " ");
    match v.rfind('<') {
        Some(i) => v[..i].trim().to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(msg: &str, alignment: FromAlignment) -> Result<String, PrepError> {
        let domains = vec!["example.test".to_string()];
        let who = Submitter {
            domains: Some(&domains),
            envelope_from: "odoo@example.test",
        };
        prepare(
            msg.as_bytes(),
            "mx.example.test",
            alignment,
            &Signer::default(),
            &who,
            SystemTime::UNIX_EPOCH,
        )
        .map(|v| String::from_utf8(v).expect("utf8"))
    }

    #[test]
    fn message_id_and_date_are_added_only_when_missing() {
        let out = run(
            "From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n",
            FromAlignment::Rewrite,
        )
        .expect("ok");
        assert!(out.starts_with("Message-ID: <"), "{out}");
        assert!(out.contains("@mx.example.test>\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        assert!(out.ends_with("\r\n\r\nbody\r\n"));
        let kept = "Message-ID: <1@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@example.test\r\n\r\nb\r\n";
        assert_eq!(run(kept, FromAlignment::Rewrite).expect("ok"), kept);
    }

    #[test]
    fn foreign_header_from_is_rewritten_or_rejected() {
        let msg = "Message-ID: <1@x>\r\nDate: d\r\nFrom: \"Jane Customer\"\r\n <jane@gmail.test>\r\nSubject: s\r\n\r\nb\r\n";
        let out = run(msg, FromAlignment::Rewrite).expect("ok");
        assert!(
            out.contains("From: \"Jane Customer\" <odoo@example.test>\r\nReply-To: \"Jane Customer\"\r\n <jane@gmail.test>\r\nSubject: s\r\n"),
            "{out}"
        );
        assert!(matches!(
            run(msg, FromAlignment::Reject),
            Err(PrepError::FromNotAllowed(_))
        ));
        assert_eq!(run(msg, FromAlignment::Off).expect("ok"), msg);
        let aligned = "Message-ID: <1@x>\r\nDate: d\r\nFrom: Shop <shop@Example.Test>\r\n\r\nb\r\n";
        assert_eq!(run(aligned, FromAlignment::Reject).expect("ok"), aligned);
    }
}
