//! Which mailbox provider a relayed recipient belongs to, for warming's hourly caps and
//! connection limits (issue 6 §2): by a table in config first — the `domains` and `mx` of
//! `[warming.providers.NAME]`, so an operator can add a provider (a national ISP, a hosting
//! company) or more hosts of a known one — then by the built-in table the bounce stage uses
//! ([`detect_provider`](super::detect_provider): Gmail, Google Workspace, Microsoft, Yahoo, AOL,
//! iCloud, ...). The recipient's domain decides before its MX hosts, so an `@gmail.com`
//! address is Gmail without a DNS lookup; everything else is `other`.

/// Daily caps per source IP and provider: (provider label, new IP, warmed IP) messages per
/// UTC day (issue 17 item 7), overridable per provider with `new_daily` / `warmed_daily` in
/// `[warming.providers.NAME]`. Where the figures come from: Gmail's warmed 50,000/day is
/// mySMTP's published sending table as issue 17 quotes it; the other figures keep the same
/// ratio to issue 6's hourly defaults (`config::relay::default_provider_rates`): a day is
/// ten hours at the hourly cap, which gives Gmail's 50,000 from its 5,000/hour. They are
/// starting points, not provider promises: a provider's replies (`421 4.7.28`, `TS03`)
/// are what the adaptive throttle acts on.
pub const DAILY_CAPS: &[(&str, u64, u64)] = &[
    ("gmail", 5_000, 50_000),
    ("google_workspace", 5_000, 50_000),
    ("yahoo", 10_000, 100_000),
    ("microsoft", 5_000, 30_000),
    ("aol", 5_000, 50_000),
    ("icloud", 5_000, 20_000),
];

/// A `domains` / `mx` entry of `[warming.providers.NAME]`: a DNS name, optionally
/// `*.`-prefixed, kept normalised (`"*.Mail.OVH.net."` → `"mail.ovh.net"`). It matches itself
/// and every name under it. Parsed once when the config loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(String);

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(pattern: String) -> Result<HostPattern, String> {
        if valid_pattern(&pattern) {
            Ok(HostPattern(normalise(&pattern)))
        } else {
            Err(format!(
                "{pattern:?} is not a DNS name (e.g. \"orange.fr\", \"*.orange-mx.fr\")"
            ))
        }
    }
}

/// Configured recognition entries, in name order.
#[derive(Clone, Debug, Default)]
pub struct ProviderTable {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    domains: Vec<HostPattern>,
    mx: Vec<HostPattern>,
}

impl ProviderTable {
    /// From `(name, domains, mx)` per configured provider; entries without patterns only
    /// set rates and are skipped.
    pub fn new<'a>(
        providers: impl IntoIterator<Item = (&'a str, Vec<HostPattern>, Vec<HostPattern>)>,
    ) -> ProviderTable {
        let entries = providers
            .into_iter()
            .filter(|(_, domains, mx)| !domains.is_empty() || !mx.is_empty())
            .map(|(name, domains, mx)| Entry {
                name: name.to_ascii_lowercase(),
                domains,
                mx,
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
            .find(|e| e.domains.iter().any(|s| matches(&d, &s.0)));
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
            .find(|e| hosts.iter().any(|h| e.mx.iter().any(|s| matches(h, &s.0))));
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
fn valid_pattern(pattern: &str) -> bool {
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
        let hosts = |names: &[&str]| -> Vec<HostPattern> {
            names
                .iter()
                .map(|n| HostPattern::try_from(n.to_string()).expect("pattern"))
                .collect()
        };
        ProviderTable::new([
            ("gmail", hosts(&[]), hosts(&[])),
            (
                "orange",
                hosts(&["orange.test", "wanadoo.test"]),
                hosts(&["*.orange-mx.test"]),
            ),
            ("microsoft", hosts(&[]), hosts(&["mail.protection.example"])),
        ])
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
