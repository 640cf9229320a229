//! Inbound auto-replies on their way to the ERP (issue 15 item 5): out-of-office and
//! vacation notices answering the ERP's mail must not become leads or tickets. Each ERP
//! route recipient's domain decides (`[[domains]] auto_replies`): `tag` adds
//! `X-Mxgate-Auto-Reply: yes` on top of the message (any such field the sender wrote is
//! removed first, so the ERP can trust it), `drop` records the recipient `sent` without
//! delivering, `deliver` passes it untouched.
//!
//! Decided at delivery, per recipient, not in the SMTP session: one message can reach
//! domains with different settings, and a config reload applies to mail already queued.
//!
//! What counts as an auto-reply (RFC 3834 and what is seen in the wild): `Auto-Submitted`
//! other than `no` (§5), `X-Autoreply`/`X-Autorespond`, `Precedence: auto_reply|bulk|junk`,
//! or what the bounce parser recognises as an auto-reply (vacation subjects in many
//! languages, Exchange's headers).

use crate::bounce::ReportKind;
use crate::config::AutoReplies;
use crate::message;

/// The field mxgate adds to auto-replies.
pub const HEADER: &str = "X-Mxgate-Auto-Reply";

/// What one delivery of `raw` does.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The message as it is.
    Deliver,
    /// This body instead: tagged (`tag`), or a `X-Mxgate-Auto-Reply` the sender wrote
    /// removed.
    Rewritten(Vec<u8>),
    /// `drop`: nothing is delivered.
    Drop,
}

/// Whether `raw` is an auto-reply.
pub fn is_auto_reply(raw: &[u8]) -> bool {
    let head = message::header_section(raw);
    // Ordinary mail stops at the header filter: a header it passes has none of the fields
    // read below and a subject the bounce parser cannot call an auto-reply.
    if !crate::bounce::may_be_auto_reply(head) {
        return false;
    }
    // One pass over the fields (the first of each name counts, as `message::find` would).
    let (mut auto_submitted, mut precedence, mut vendor) = (None, None, false);
    for field in message::fields(head) {
        if auto_submitted.is_none() && field.is("auto-submitted") {
            auto_submitted = Some(field);
        } else if precedence.is_none() && field.is("precedence") {
            precedence = Some(field);
        } else if field.is("x-autoreply") || field.is("x-autorespond") {
            vendor = true;
        }
    }
    let value = |f: Option<message::Field<'_>>| f.map(|f| f.unfolded().to_ascii_lowercase());
    let auto_submitted =
        value(auto_submitted).is_some_and(|v| !v.is_empty() && !v.starts_with("no"));
    let precedence =
        value(precedence).is_some_and(|v| matches!(v.as_str(), "auto_reply" | "bulk" | "junk"));
    auto_submitted
        || precedence
        || vendor
        || crate::bounce::parse(raw).kind == ReportKind::AutoReply
}

/// What `mode` makes of `raw`; `auto` = [`is_auto_reply`] of it (asked by the caller, who
/// also counts it).
pub fn decide(mode: AutoReplies, auto: bool, raw: &[u8]) -> Decision {
    let tag = auto && mode != AutoReplies::Deliver;
    if tag && mode == AutoReplies::Drop {
        return Decision::Drop;
    }
    let forged = message::find(message::header_section(raw), HEADER).is_some();
    if tag || forged {
        return Decision::Rewritten(rewrite(raw, tag));
    }
    Decision::Deliver
}

/// `raw` without any `X-Mxgate-Auto-Reply` field, and with `tag`, one saying `yes` on
/// top — but below the session's `X-Mxgate-Auth`, which must stay the first field
/// ([`erp_header_of`](crate::auth::erp_header_of) trusts it only there).
fn rewrite(raw: &[u8], tag: bool) -> Vec<u8> {
    let (head, rest) = message::split(raw);
    let mut out = Vec::with_capacity(raw.len() + 32);
    let mut fields = message::fields(head).peekable();
    if let Some(first) = fields.next_if(|f| f.is(crate::auth::ERP_FIELD)) {
        out.extend_from_slice(first.raw);
    }
    if tag {
        out.extend_from_slice(format!("{HEADER}: yes\r\n").as_bytes());
    }
    for f in fields.filter(|f| !f.is(HEADER)) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] = b"From: a@client.test\r\nSubject: Quote please\r\n\r\nHello\r\n";

    fn with(header: &str) -> Vec<u8> {
        format!("From: a@client.test\r\n{header}\r\nSubject: Re: your order\r\n\r\nBody\r\n")
            .into_bytes()
    }

    #[test]
    fn rfc3834_and_vendor_markers_are_auto_replies() {
        for h in [
            "Auto-Submitted: auto-replied",
            "Auto-Submitted: auto-generated",
            "Auto-Submitted: auto-notified; owner-email=x@y",
            "X-Autoreply: yes",
            "X-Autorespond: 1",
            "Precedence: bulk",
            "Precedence: junk",
            "Precedence: auto_reply",
        ] {
            assert!(is_auto_reply(&with(h)), "{h}");
        }
        for h in ["Auto-Submitted: no", "Precedence: list", "X-Other: 1"] {
            assert!(!is_auto_reply(&with(h)), "{h}");
        }
        assert!(!is_auto_reply(PLAIN));
        let ooo = b"From: b@client.test\r\nSubject: Out of Office: back Monday\r\n\r\nAway\r\n";
        assert!(
            is_auto_reply(ooo),
            "vacation subject, as the bounce parser knows it"
        );
    }

    #[test]
    fn tag_puts_one_trusted_field_on_top_and_keeps_the_rest() {
        let spoofed = with("Auto-Submitted: auto-replied\r\nX-Mxgate-Auto-Reply: no");
        let Decision::Rewritten(out) = decide(AutoReplies::Tag, true, &spoofed) else {
            panic!("tagged");
        };
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with("X-Mxgate-Auto-Reply: yes\r\nFrom: a@client.test\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("X-Mxgate-Auto-Reply").count(), 1, "{text}");
        assert!(text.ends_with("\r\n\r\nBody\r\n"));
        let sealed = [b"X-Mxgate-Auth: spf=pass\r\n".as_slice(), &spoofed].concat();
        let Decision::Rewritten(out) = decide(AutoReplies::Tag, true, &sealed) else {
            panic!("tagged");
        };
        assert!(out.starts_with(b"X-Mxgate-Auth: spf=pass\r\nX-Mxgate-Auto-Reply: yes\r\n"));
    }

    #[test]
    fn modes_deliver_drop_and_ordinary_mail_untouched() {
        let auto = with("Auto-Submitted: auto-replied");
        assert_eq!(decide(AutoReplies::Deliver, true, &auto), Decision::Deliver);
        assert_eq!(decide(AutoReplies::Drop, true, &auto), Decision::Drop);
        assert_eq!(decide(AutoReplies::Tag, false, PLAIN), Decision::Deliver);
        assert_eq!(decide(AutoReplies::Drop, false, PLAIN), Decision::Deliver);
        // A sender's own field never reaches the ERP, whatever the mode.
        let forged = with("X-Mxgate-Auto-Reply: yes");
        for mode in [AutoReplies::Deliver, AutoReplies::Tag, AutoReplies::Drop] {
            let Decision::Rewritten(out) = decide(mode, false, &forged) else {
                panic!("{mode:?}: rewritten");
            };
            assert!(!String::from_utf8_lossy(&out).contains("X-Mxgate-Auto-Reply"));
        }
    }
}
