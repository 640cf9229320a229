//! What the observer reads from a message's header section: its `Message-ID` (events,
//! the `m/` record complaints are matched by) and whether it looks like bulk mail.
//!
//! Split from the observer because it is pure parsing of message bytes, shared with the
//! delivery worker and the bounce intake, and independent of what is counted or emitted.

/// What the observer needs from a message's header (read once per attempt).
#[derive(Clone, Debug, Default)]
pub struct MessageInfo {
    /// `Message-ID` without angle brackets.
    pub message_id: String,
    pub email_type: &'static str,
}

impl MessageInfo {
    /// Reads the header section of `raw` (bounded).
    pub fn from_message(raw: &[u8]) -> MessageInfo {
        let head = crate::message::header_section(&raw[..raw.len().min(64 * 1024)]);
        let mut message_id = String::new();
        let mut bulk = false;
        // Names compared in place: a lowercased copy of every field name was one of the
        // largest allocations left per delivery (issue 13).
        for field in crate::message::fields(head) {
            let name = field.name();
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            if is("message-id") && message_id.is_empty() {
                let v = field.unfolded();
                message_id = v.trim_start_matches('<').trim_end_matches('>').to_string();
            } else if is("list-unsubscribe") || is("list-id") {
                bulk = true;
            } else if is("precedence") {
                let v = field.unfolded().to_ascii_lowercase();
                bulk |= matches!(v.as_str(), "bulk" | "list" | "junk");
            }
        }
        MessageInfo {
            message_id,
            email_type: if bulk { "mass" } else { "transactional" },
        }
    }
}

/// `email_type` label guessed from the headers: `mass` when the message carries list headers
/// (`List-Unsubscribe`, `List-Id`) or `Precedence: bulk|list|junk`, else `transactional`.
/// Only a fallback: the stream stored with a queued message wins (see `attempt`/`dsn`).
pub fn email_type(raw: &[u8]) -> &'static str {
    MessageInfo::from_message(raw).email_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_info_reads_message_id_and_bulk_headers() {
        let raw = b"Received: x\r\nMessage-ID:\r\n <abc@erp.test>\r\nList-Unsubscribe: <mailto:u@x>\r\n\r\nbody";
        let i = MessageInfo::from_message(raw);
        assert_eq!(i.message_id, "abc@erp.test");
        assert_eq!(i.email_type, "mass");
        let i = MessageInfo::from_message(b"Message-ID: <x@y>\n\nList-Id: not a header");
        assert_eq!(i.email_type, "transactional");
    }
}
