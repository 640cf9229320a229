//! Which mailbox provider a relayed recipient belongs to, for warming's hourly caps and
//! connection limits (issue 6 §2): by a table in config first — the `domains` and `mx` of
//! `[warming.providers.NAME]`, so an operator can add a provider (a national ISP, a hosting
//! company) or more hosts of a known one — then by the built-in table the bounce stage uses
//! ([`detect_provider`](super::detect_provider): Gmail, Google Workspace, Microsoft, Yahoo, AOL,
//! iCloud, ...). The recipient's domain decides before its MX hosts, so an `@gmail.com`
//! address is Gmail without a DNS lookup; everything else is `other`.

use std::collections::BTreeMap;

use crate::config::ProviderRate;

/// Configured recognition entries, in name order.
#[derive(Clone, Debug, Default)]
pub struct ProviderTable {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    /// Normalised suffixes: a domain or host matches itself and every name under it.
    domains: Vec<String>,
    mx: Vec<String>,
}

impl ProviderTable {
    pub fn new(rates: &BTreeMap<String, ProviderRate>) -> ProviderTable {
        let entries = rates
            .iter()
            .filter(|(_, r)| !r.domains.is_empty() || !r.mx.is_empty())
            .map(|(name, r)| Entry {
                name: name.to_ascii_lowercase(),
                domains: r.domains.iter().map(|d| normalise(d)).collect(),
                mx: r.mx.iter().map(|h| normalise(h)).collect(),
            })
            .collect();
        ProviderTable { entries }
    }

    /// The provider label of recipient domain `domain` alone, if the domain says it.
    pub fn by_domain(&self, domain: &str) -> Option<String> {
        let d = normalise(domain);
        let configured = self
            .entries
            .iter()
            .find(|e| e.domains.iter().any(|s| matches(&d, s)));
        if let Some(e) = configured {
            return Some(e.name.clone());
        }
        super::Provider::from_mailbox_domain(&d).map(|p| p.as_label().to_string())
    }

    /// The provider label of a recipient domain that [`by_domain`](Self::by_domain) did not
    /// place, by its MX `hosts`; `other` when nothing matches.
    pub fn by_hosts(&self, domain: &str, hosts: &[String]) -> String {
        let hosts: Vec<String> = hosts.iter().map(|h| normalise(h)).collect();
        let configured = self
            .entries
            .iter()
            .find(|e| hosts.iter().any(|h| e.mx.iter().any(|s| matches(h, s))));
        if let Some(e) = configured {
            return e.name.clone();
        }
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let to = format!("x@{domain}");
        super::detect_provider(Some(&to), &hosts, "")
            .as_label()
            .to_string()
    }
}

/// `"*.Mail.OVH.net."` → `"mail.ovh.net"`: lower case, no wildcard or leading/trailing dot.
fn normalise(name: &str) -> String {
    let n = name.trim().trim_end_matches('.');
    let n = n.strip_prefix("*.").unwrap_or(n).trim_start_matches('.');
    n.to_ascii_lowercase()
}

/// `name` is `suffix` or a name under it (label boundary: `notovh.net` is not `ovh.net`).
fn matches(name: &str, suffix: &str) -> bool {
    !suffix.is_empty()
        && (name == suffix
            || (name.len() > suffix.len()
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'))
}

/// Whether `pattern` can be a `domains` / `mx` entry (a DNS name, optionally `*.`-prefixed).
pub fn valid_pattern(pattern: &str) -> bool {
    let n = normalise(pattern);
    !n.is_empty()
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProviderTable {
        let rate = |domains: &[&str], mx: &[&str]| ProviderRate {
            new_hourly: 1,
            warmed_hourly: 2,
            connections: None,
            domains: domains.iter().map(|s| s.to_string()).collect(),
            mx: mx.iter().map(|s| s.to_string()).collect(),
        };
        let mut rates = crate::config::WarmingConfig::default().provider_rates();
        rates.insert(
            "orange".into(),
            rate(&["orange.test", "wanadoo.test"], &["*.orange-mx.test"]),
        );
        rates.insert("microsoft".into(), rate(&[], &["mail.protection.example"]));
        ProviderTable::new(&rates)
    }

    #[test]
    fn configured_domains_and_hosts_come_first_then_the_built_in_table() {
        let t = table();
        assert_eq!(t.by_domain("Orange.TEST").as_deref(), Some("orange"));
        assert_eq!(t.by_domain("mail.wanadoo.test").as_deref(), Some("orange"));
        assert_eq!(t.by_domain("gmail.com").as_deref(), Some("gmail"));
        assert_eq!(t.by_domain("corp.test"), None);
        let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            t.by_hosts("corp.test", &hosts(&["mx1.orange-mx.test."])),
            "orange"
        );
        assert_eq!(
            t.by_hosts("corp.test", &hosts(&["orange-mx.test"])),
            "orange"
        );
        assert_eq!(
            t.by_hosts("corp.test", &hosts(&["x.mail.protection.example"])),
            "microsoft"
        );
        assert_eq!(
            t.by_hosts("corp.test", &hosts(&["aspmx.l.google.com"])),
            "google_workspace"
        );
        assert_eq!(
            t.by_hosts("corp.test", &hosts(&["notorange-mx.test"])),
            "other"
        );
        assert_eq!(t.by_hosts("corp.test", &[]), "other");
    }

    #[test]
    fn patterns_are_dns_names() {
        assert!(valid_pattern("*.orange-mx.test"));
        assert!(valid_pattern(".mail.ovh.net"));
        assert!(!valid_pattern(""));
        assert!(!valid_pattern("*."));
        assert!(!valid_pattern("bad host"));
        assert!(!valid_pattern("a..b"));
    }
}
