//! `[streams]`: email types of submitted mail (issue 6 item 5). Not named by SPEC. A message
//! is `mass` when the header `header` says `mass` (the header is removed), or its
//! submitting user is in `mass_users`, or its envelope sender matches `mass_from`;
//! otherwise (and with `header: transactional`) it is `transactional`.
//!
//! Each stream may leave from its own source IP (`mass_source_ip`, `transactional_source_ip`,
//! as Postfix's `smtp_bind_address`), and mass mail may have smart hosts of its own
//! (`mass_smarthosts`), so bulk reputation stays apart from transactional mail.

use std::net::IpAddr;

use serde::Deserialize;

use crate::envelope::Stream;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Share of `queue.concurrency` mass mail may occupy, in percent (1..=100). When the
    /// concurrency is above 1, transactional mail always keeps at least one slot.
    pub mass_share_percent: u32,
    /// Header that chooses the stream (`mass` | `transactional`); removed on submission.
    pub header: String,
    /// Submission users (`submission.users[].name`) whose mail is mass.
    pub mass_users: Vec<String>,
    /// Envelope senders whose mail is mass: a full address or `@domain`.
    pub mass_from: Vec<String>,
    /// Add RFC 8058 one-click `List-Unsubscribe` + `List-Unsubscribe-Post` to mass mail with
    /// one relayed recipient (unless the message has its own `List-Unsubscribe`).
    pub list_unsubscribe: bool,
    /// Public base URL of the admin listener's `POST /unsubscribe/TOKEN` endpoint, e.g.
    /// `https://mx.example.test` (a reverse proxy exposes that one path).
    pub unsubscribe_url: String,
    /// Local address outbound connections of mass mail bind to; unset = the OS picks.
    /// An IPv4 source only connects to IPv4 addresses (IPv6 likewise).
    pub mass_source_ip: Option<String>,
    /// As `mass_source_ip`, for transactional mail (and forwards, DSNs).
    pub transactional_source_ip: Option<String>,
    /// `relay.smarthosts` names mass mail goes through (priority and `from_filter` still
    /// apply); transactional mail never uses them. Empty = both streams share every host.
    pub mass_smarthosts: Vec<String>,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            mass_share_percent: 50,
            header: "X-Mxgate-Stream".to_string(),
            mass_users: Vec::new(),
            mass_from: Vec::new(),
            list_unsubscribe: false,
            unsubscribe_url: String::new(),
            mass_source_ip: None,
            transactional_source_ip: None,
            mass_smarthosts: Vec::new(),
        }
    }
}

impl StreamsConfig {
    /// Problems as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if !(1..=100).contains(&self.mass_share_percent) {
            p.push(("streams.mass_share_percent", "must be 1..=100".to_string()));
        }
        let h = &self.header;
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            p.push(("streams.header", "must be a header field name".to_string()));
        }
        let url = &self.unsubscribe_url;
        let http = url.starts_with("https://") || url.starts_with("http://");
        if (self.list_unsubscribe || !url.is_empty())
            && (!http || url.contains(char::is_whitespace))
        {
            p.push((
                "streams.unsubscribe_url",
                "must be an http(s) URL when list_unsubscribe is on".to_string(),
            ));
        }
        for (key, value) in [
            ("streams.mass_source_ip", &self.mass_source_ip),
            (
                "streams.transactional_source_ip",
                &self.transactional_source_ip,
            ),
        ] {
            if let Some(v) = value
                && let Err(e) = parse_source_ip(v)
            {
                p.push((key, e));
            }
        }
        p
    }

    /// The local address `stream`'s outbound connections bind to (validated at load).
    pub fn source_ip(&self, stream: Stream) -> Option<IpAddr> {
        let v = match stream {
            Stream::Mass => &self.mass_source_ip,
            Stream::Transactional => &self.transactional_source_ip,
        };
        v.as_deref().and_then(|v| parse_source_ip(v).ok())
    }

    /// Whether smart host `name` may carry mail of `stream`.
    pub fn smarthost_serves(&self, name: &str, stream: Stream) -> bool {
        if self.mass_smarthosts.is_empty() {
            return true;
        }
        let listed = self.mass_smarthosts.iter().any(|m| m == name);
        listed == (stream == Stream::Mass)
    }

    /// Concurrency slots mass mail may use out of `concurrency`.
    pub fn mass_slots(&self, concurrency: usize) -> usize {
        let share = concurrency * self.mass_share_percent.min(100) as usize / 100;
        let cap = if concurrency > 1 { concurrency - 1 } else { 1 };
        share.clamp(1, cap)
    }

    /// Is mail from `user` (authenticated submission user) / `mail_from` mass by config?
    pub fn mass_by_sender(&self, user: Option<&str>, mail_from: &str) -> bool {
        if user.is_some_and(|u| self.mass_users.iter().any(|m| m == u)) {
            return true;
        }
        let from = mail_from.to_ascii_lowercase();
        self.mass_from.iter().any(|f| {
            let f = f.to_ascii_lowercase();
            if f.starts_with('@') {
                from.ends_with(&f)
            } else {
                from == f
            }
        })
    }
}

/// A source address: a unicast IP address of this host (checked when binding).
fn parse_source_ip(v: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = v
        .trim()
        .parse()
        .map_err(|_| format!("{v:?} is not an IP address"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{v:?} is not a unicast address (remove the key to let the OS choose)"
        ));
    }
    Ok(ip)
}
