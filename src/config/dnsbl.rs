//! `[[spam.dnsbl]]`: DNS block- and allowlists asked at connect (issue 16 item 2).
//!
//! A field of [`SpamConfig`] (`[spam]`, whose rspamd settings are in `spam.rs`), kept in its
//! own file with its checks.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::SpamConfig;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblConfig {
    /// The list's DNS zone, e.g. `zen.spamhaus.org`: the client `192.0.2.1` is listed when
    /// `1.2.0.192.<zone>` has an A record (IPv6: 32 reversed nibbles, RFC 5782 §2.4).
    pub zone: String,
    /// What a listing does: `reject` (554 5.7.1 instead of the banner), `tag` (the mail is
    /// accepted with an `X-Mxgate-Dnsbl` header) or `allow` (a DNSWL: a listed client skips
    /// the `reject` zones).
    #[serde(default)]
    pub action: DnsblAction,
    /// Answers that count as listed; empty = any `127.0.0.0/8` answer except
    /// `127.255.255.0/24`, the codes Spamhaus & co. use for "query refused", which must
    /// never block anyone.
    #[serde(default)]
    pub return_codes: Vec<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsblAction {
    #[default]
    Reject,
    Tag,
    Allow,
}

impl DnsblAction {
    pub fn as_label(self) -> &'static str {
        match self {
            DnsblAction::Reject => "reject",
            DnsblAction::Tag => "tag",
            DnsblAction::Allow => "allow",
        }
    }
}

impl SpamConfig {
    /// Problems of the `[[spam.dnsbl]]` zones as `(key, message)`.
    pub fn dnsbl_problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        for (i, z) in self.dnsbl.iter().enumerate() {
            let zone = z.zone.trim_end_matches('.');
            let labels_ok = zone.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
            // 72 octets of reversed IPv6 nibbles go in front of the zone (RFC 1035: 253).
            if zone.is_empty() || !labels_ok || zone.len() > 253 - 72 {
                p.push((
                    format!("spam.dnsbl[{i}].zone"),
                    format!("{:?} is not a DNS zone name", z.zone),
                ));
            }
            if let Some(c) = z.return_codes.iter().find(|c| c.octets()[0] != 127) {
                p.push((
                    format!("spam.dnsbl[{i}].return_codes"),
                    format!("{c} is not a 127.0.0.0/8 DNSBL return code"),
                ));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_return_codes_are_checked() {
        let cfg: SpamConfig = toml::from_str(
            "[[dnsbl]]\nzone = \"zen.example\"\n[[dnsbl]]\nzone = \"bad..zone\"\naction = \"tag\"\nreturn_codes = [\"10.0.0.1\"]\n",
        )
        .expect("parses");
        assert_eq!(cfg.dnsbl[0].action, DnsblAction::Reject);
        let keys: Vec<String> = cfg.dnsbl_problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["spam.dnsbl[1].zone", "spam.dnsbl[1].return_codes"]);
        assert!(
            toml::from_str::<SpamConfig>("[[dnsbl]]\nzone = \"z\"\naction = \"drop\"\n").is_err()
        );
    }
}
