//! The filters of `GET /api/queue` the queue console (`/queue`) offers besides `state`:
//! sender, recipient, recipient domain (substrings, case-insensitive), listener, and the
//! reception date range. Pure: applied to the messages the store listed.

use serde::Deserialize;

use crate::queue::QueuedMessage;

#[derive(Default, Deserialize)]
pub struct QueueFilter {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub domain: Option<String>,
    pub listener: Option<String>,
    /// `YYYY-MM-DD`, RFC 3339 or epoch seconds (as `/api/bounces`).
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A filter with its values checked: the reception window in ms, the rest lower case.
pub struct Parsed {
    sender: Option<String>,
    recipient: Option<String>,
    domain: Option<String>,
    listener: Option<String>,
    from_ms: u64,
    to_ms: u64,
}

fn lower(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
}

impl QueueFilter {
    /// Checked values, or what is wrong with the date range.
    pub fn parse(&self) -> Result<Parsed, String> {
        let time = |v: &Option<String>, name: &str, end: bool, none: u64| match v
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => Ok(none),
            Some(t) => super::bounces::parse_time(t, end)
                .ok_or_else(|| format!("`{name}`={t:?}: use YYYY-MM-DD, RFC 3339 or seconds")),
        };
        Ok(Parsed {
            sender: lower(&self.sender),
            recipient: lower(&self.recipient),
            domain: lower(&self.domain).map(|d| d.trim_start_matches('@').to_string()),
            listener: lower(&self.listener),
            from_ms: time(&self.from, "from", false, 0)?,
            to_ms: time(&self.to, "to", true, u64::MAX)?,
        })
    }
}

impl Parsed {
    pub fn matches(&self, m: &QueuedMessage) -> bool {
        let has = |text: &str, part: &Option<String>| {
            part.as_ref()
                .is_none_or(|p| text.to_lowercase().contains(p.as_str()))
        };
        let rcpt = |f: &dyn Fn(&str) -> bool| m.recipients.iter().any(|r| f(&r.address));
        has(&m.mail_from, &self.sender)
            && (self.recipient.is_none() || rcpt(&|a| has(a, &self.recipient)))
            && (self.domain.is_none()
                || rcpt(&|a| {
                    a.rsplit_once('@')
                        .is_some_and(|(_, d)| Some(d.to_lowercase()) == self.domain)
                }))
            && self
                .listener
                .as_ref()
                .is_none_or(|l| m.listener.as_str() == l)
            && (self.from_ms..=self.to_ms).contains(&m.received_ms)
    }
}
