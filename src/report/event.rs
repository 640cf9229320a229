//! Event building: an observed outcome → the [`Event`] the ERP's webhook receives.
//!
//! Split from counting ([`super::count`]) because the event says what happened to one
//! recipient of one message, in the ERP's terms (its queue id, Message-ID, sender, the
//! remote's words), while counting aggregates under bounded labels; the two read the same
//! outcome and must not influence each other.

use crate::bounce::{Category, RecipientResult};
use crate::events::{Event, Kind};
use crate::queue::{QueuedMessage, Recipient};
use crate::stats::BounceInfo;

use super::Attempt;

/// The event of a reported attempt; `bounce` is what counting made of a relayed bounce or
/// expiry (an expiry's category is its own, a recipient error).
pub(super) fn attempt_event(a: Attempt, kind: Kind, bounce: Option<&BounceInfo>) -> Event {
    let category = bounce
        .map(|b| b.category)
        .or(a.category)
        .map(|c| c.as_str().to_string());
    let direction = if a.outbound() { "outbound" } else { "inbound" };
    Event {
        id: 0,
        event: kind,
        timestamp: String::new(),
        queue_id: a.msg.id.to_string(),
        message_id: a.info.message_id.clone(),
        sender: a.msg.mail_from.clone(),
        recipient: a.rcpt.address.clone(),
        status: bounce.map(|b| b.status.clone()).filter(|s| !s.is_empty()),
        reply: a.reply,
        category,
        attempts: a.attempts,
        direction,
        feedback_type: None,
        provider: None,
    }
}

/// The `bounced` event of a DSN that closed the loop for `rcpt` of `msg`: the reply the
/// queue recorded, else the DSN's diagnostic.
pub(super) fn dsn_event(
    msg: &QueuedMessage,
    rcpt: &Recipient,
    message_id: String,
    failed: &RecipientResult,
    category: Category,
) -> Event {
    Event {
        id: 0,
        event: Kind::Bounced,
        timestamp: String::new(),
        queue_id: msg.id.to_string(),
        message_id,
        sender: msg.mail_from.clone(),
        recipient: rcpt.address.clone(),
        reply: rcpt
            .last_reply
            .clone()
            .unwrap_or_else(|| failed.diagnostic.clone()),
        category: Some(category.as_str().to_string()),
        status: failed.status.clone(),
        attempts: rcpt.attempts,
        direction: "outbound",
        feedback_type: None,
        provider: None,
    }
}
