//! `[streams]`: email types of submitted mail (issue 6 item 5). Not named by SPEC. A message
//! is `mass` when the header `header` says `mass` (the header is removed), or its
//! submitting user is in `mass_users`, or its envelope sender matches `mass_from`;
//! otherwise (and with `header: transactional`) it is `transactional`.
//!
//! Each stream may leave from its own source IP (`mass_source_ip`, `transactional_source_ip`,
//! as Postfix's `smtp_bind_address`), and mass mail may have smart hosts of its own
//! (`mass_smarthosts`), so bulk reputation stays apart from transactional mail.
//!
//! Or from a pool of them (issue 17 item 6): `mass_source_ips = [{ ip = "192.0.2.10",
//! weight = 3 }, ...]` (and `transactional_source_ips`). The single-IP keys stay and mean a
//! one-element pool; a stream sets one form or the other. How a pool is used:
//! [`delivery::pools`](crate::delivery).

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
    /// A pool of source IPs for mass mail, chosen by weight per destination domain.
    pub mass_source_ips: Vec<PoolIp>,
    /// As `mass_source_ips`, for transactional mail.
    pub transactional_source_ips: Vec<PoolIp>,
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
            mass_source_ips: Vec::new(),
            transactional_source_ips: Vec::new(),
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
        for (key, single, pool) in [
            (
                "streams.mass_source_ips",
                &self.mass_source_ip,
                &self.mass_source_ips,
            ),
            (
                "streams.transactional_source_ips",
                &self.transactional_source_ip,
                &self.transactional_source_ips,
            ),
        ] {
            pool_problems(key, single.is_some(), pool, &mut p);
        }
        p
    }

    /// The local address `stream`'s outbound connections bind to (validated at load): the
    /// single-IP key, else the pool's first address.
    pub fn source_ip(&self, stream: Stream) -> Option<IpAddr> {
        self.source_pool(stream).first().map(|(ip, _)| *ip)
    }

    /// `stream`'s source IPs with their weights: the pool, or the single-IP key as a
    /// one-element pool; empty = the OS picks. Entries that did not validate are left out.
    pub fn source_pool(&self, stream: Stream) -> Vec<(IpAddr, u32)> {
        let (single, pool) = match stream {
            Stream::Mass => (&self.mass_source_ip, &self.mass_source_ips),
            Stream::Transactional => (
                &self.transactional_source_ip,
                &self.transactional_source_ips,
            ),
        };
        match single {
            Some(v) => parse_source_ip(v)
                .ok()
                .map(|ip| (ip, 1))
                .into_iter()
                .collect(),
            None => pool
                .iter()
                .filter_map(|p| Some((parse_source_ip(&p.ip).ok()?, p.weight)))
                .collect(),
        }
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

/// One entry of a source IP pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolIp {
    pub ip: String,
    /// Share of the stream's destinations this IP takes, relative to the others' (1..=1000).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Problems of pool `key`: each address, each weight, duplicates, and both forms at once.
fn pool_problems(
    key: &'static str,
    single_set: bool,
    pool: &[PoolIp],
    p: &mut Vec<(&'static str, String)>,
) {
    if single_set && !pool.is_empty() {
        let single = key.trim_end_matches('s');
        p.push((key, format!("set either {single} or {key}, not both")));
    }
    let mut seen = Vec::new();
    for (i, entry) in pool.iter().enumerate() {
        match parse_source_ip(&entry.ip) {
            Ok(ip) if seen.contains(&ip) => p.push((key, format!("[{i}]: {ip} is listed twice"))),
            Ok(ip) => seen.push(ip),
            Err(e) => p.push((key, format!("[{i}].ip: {e}"))),
        }
        if !(1..=1000).contains(&entry.weight) {
            p.push((key, format!("[{i}].weight: must be 1..=1000")));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn streams(toml: &str) -> StreamsConfig {
        Config::from_toml(&format!("[streams]\n{toml}\n"), Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .streams
    }

    #[test]
    fn a_pool_or_a_single_ip_and_the_pool_is_checked() {
        let s = streams(
            "mass_source_ips = [{ ip = \"127.0.0.1\", weight = 3 }, { ip = \"127.0.0.2\" }]\ntransactional_source_ip = \"127.0.0.3\"",
        );
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            s.source_pool(Stream::Mass),
            [(ip("127.0.0.1"), 3), (ip("127.0.0.2"), 1)]
        );
        assert_eq!(s.source_ip(Stream::Mass), Some(ip("127.0.0.1")));
        assert_eq!(s.source_pool(Stream::Transactional), [(ip("127.0.0.3"), 1)]);
        let mut bad = StreamsConfig {
            mass_source_ip: Some("127.0.0.9".into()),
            ..s
        };
        bad.mass_source_ips.push(PoolIp {
            ip: "127.0.0.1".into(),
            weight: 0,
        });
        bad.mass_source_ips.push(PoolIp {
            ip: "nope".into(),
            weight: 1,
        });
        let problems = bad.problems();
        let messages: Vec<String> = problems
            .iter()
            .filter(|(k, _)| *k == "streams.mass_source_ips")
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("not both"), "{messages:?}");
        assert!(messages[1].contains("listed twice"), "{messages:?}");
        assert!(messages[2].contains("[2].weight"), "{messages:?}");
        assert!(messages[3].contains("[3].ip"), "{messages:?}");
    }
}
