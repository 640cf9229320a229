//! The provider table: which mailbox provider ("ESP/ISP") an address, a host or a failure
//! belongs to. A leaf both the bounce stage (who refused the mail) and relay warming (whose
//! hourly caps apply, [`ProviderTable`]) use, and config checks its provider names against.
//!
//! Detection goes by the recipient's domain, the remote MTA's host name, host names quoted in
//! the diagnostic and the report's own hosts. The set is closed (metric label cardinality
//! stays bounded); the rest is `Other`.

mod table;

pub use table::{DAILY_CAPS, HostPattern, ProviderTable};

use serde::Serialize;

/// A mailbox provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Gmail,
    GoogleWorkspace,
    Microsoft,
    Yahoo,
    Aol,
    Icloud,
    Zoho,
    Yandex,
    MailRu,
    Gmx,
    Proton,
    Fastmail,
    Other,
}

impl Provider {
    /// Every provider, `Other` last.
    pub const ALL: &'static [Provider] = &[
        Provider::Gmail,
        Provider::GoogleWorkspace,
        Provider::Microsoft,
        Provider::Yahoo,
        Provider::Aol,
        Provider::Icloud,
        Provider::Zoho,
        Provider::Yandex,
        Provider::MailRu,
        Provider::Gmx,
        Provider::Proton,
        Provider::Fastmail,
        Provider::Other,
    ];

    /// The metric label value (`provider` label), snake case.
    pub fn as_label(&self) -> &'static str {
        match self {
            Provider::Gmail => "gmail",
            Provider::GoogleWorkspace => "google_workspace",
            Provider::Microsoft => "microsoft",
            Provider::Yahoo => "yahoo",
            Provider::Aol => "aol",
            Provider::Icloud => "icloud",
            Provider::Zoho => "zoho",
            Provider::Yandex => "yandex",
            Provider::MailRu => "mail_ru",
            Provider::Gmx => "gmx",
            Provider::Proton => "proton",
            Provider::Fastmail => "fastmail",
            Provider::Other => "other",
        }
    }

    /// The name the dashboard shows.
    pub fn display_name(&self) -> &'static str {
        match self {
            Provider::Gmail => "Gmail",
            Provider::GoogleWorkspace => "Google Workspace",
            Provider::Microsoft => "Microsoft",
            Provider::Yahoo => "Yahoo",
            Provider::Aol => "AOL",
            Provider::Icloud => "Apple iCloud",
            Provider::Zoho => "Zoho",
            Provider::Yandex => "Yandex",
            Provider::MailRu => "Mail.ru",
            Provider::Gmx => "GMX / Web.de",
            Provider::Proton => "Proton",
            Provider::Fastmail => "Fastmail",
            Provider::Other => "Other",
        }
    }

    /// The provider of a mailbox domain (consumer domains only: `gmail.com`, `outlook.com`).
    pub fn from_mailbox_domain(domain: &str) -> Option<Provider> {
        let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        MAILBOX_DOMAINS
            .iter()
            .find(|(suffixes, _)| suffixes.iter().any(|s| d == *s || is_subdomain(&d, s)))
            .map(|(_, p)| *p)
    }

    /// The provider operating a host (MX, Remote-MTA), e.g. `gmail-smtp-in.l.google.com`.
    pub fn from_host(host: &str) -> Option<Provider> {
        from_lower_host(&host.trim().trim_end_matches('.').to_ascii_lowercase())
    }
}

fn from_lower_host(h: &str) -> Option<Provider> {
    HOST_SUFFIXES
        .iter()
        .find(|(suffixes, _)| suffixes.iter().any(|s| h == *s || is_subdomain(h, s)))
        .map(|(_, p)| *p)
}

fn is_subdomain(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len()
        && host.ends_with(suffix)
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

/// Consumer mailbox domains.
const MAILBOX_DOMAINS: &[(&[&str], Provider)] = &[
    (&["gmail.com", "googlemail.com"], Provider::Gmail),
    (
        &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "outlook.jp",
            "live.jp",
        ],
        Provider::Microsoft,
    ),
    (
        &[
            "yahoo.com",
            "yahoo.co.jp",
            "yahoo.co.uk",
            "yahoo.fr",
            "ymail.com",
            "rocketmail.com",
        ],
        Provider::Yahoo,
    ),
    (&["aol.com", "aim.com", "aol.co.uk"], Provider::Aol),
    (&["icloud.com", "me.com", "mac.com"], Provider::Icloud),
    (&["zoho.com", "zohomail.com"], Provider::Zoho),
    (&["yandex.ru", "yandex.com", "ya.ru"], Provider::Yandex),
    (
        &["mail.ru", "bk.ru", "inbox.ru", "list.ru"],
        Provider::MailRu,
    ),
    (&["gmx.de", "gmx.net", "gmx.com", "web.de"], Provider::Gmx),
    (&["protonmail.com", "proton.me", "pm.me"], Provider::Proton),
    (&["fastmail.com", "fastmail.fm"], Provider::Fastmail),
];

/// Hosts the providers run their MX / outbound on. Google hosts mean Gmail or Workspace
/// depending on the recipient's domain (decided in `detect_provider`).
const HOST_SUFFIXES: &[(&[&str], Provider)] = &[
    (
        &["google.com", "googlemail.com", "gmail.com"],
        Provider::GoogleWorkspace,
    ),
    (
        &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "office365.com",
            "microsoft.com",
            "msn.com",
            "exchangelabs.com",
        ],
        Provider::Microsoft,
    ),
    (
        &[
            "yahoodns.net",
            "yahoo.com",
            "yahoo.co.jp",
            "yahoo.net",
            "yahooinc.com",
        ],
        Provider::Yahoo,
    ),
    (&["aol.com", "mx.aol.com", "aol.net"], Provider::Aol),
    (
        &["icloud.com", "me.com", "mac.com", "apple.com"],
        Provider::Icloud,
    ),
    (
        &["zoho.com", "zohomail.com", "zoho.eu", "zoho.in"],
        Provider::Zoho,
    ),
    (&["yandex.ru", "yandex.net", "yandex.com"], Provider::Yandex),
    (&["mail.ru"], Provider::MailRu),
    (&["gmx.net", "gmx.de", "gmx.com", "web.de"], Provider::Gmx),
    (
        &["protonmail.ch", "protonmail.com", "proton.me"],
        Provider::Proton,
    ),
    (&["messagingengine.com", "fastmail.com"], Provider::Fastmail),
];

/// The provider behind a failure: the recipient's domain first (a gmail.com address is
/// Gmail whoever reports it), then the hosts (Remote-MTA, MX), then host names and provider
/// markers in `text` (the diagnostic; Gmail ends replies with "gsmtp").
pub fn detect_provider(recipient: Option<&str>, hosts: &[&str], text: &str) -> Provider {
    let domain = recipient.and_then(|r| r.rsplit_once('@')).map(|(_, d)| d);
    if let Some(p) = domain.and_then(Provider::from_mailbox_domain) {
        return p;
    }
    let from_hosts = hosts.iter().find_map(|h| Provider::from_host(h));
    let found = from_hosts.or_else(|| from_text(text));
    match found {
        Some(p) => p,
        None => Provider::Other,
    }
}

fn from_text(text: &str) -> Option<Provider> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("gsmtp") || lower.contains("support.google.com") {
        return Some(Provider::GoogleWorkspace);
    }
    lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .filter(|t| t.len() > 5 && t.contains('.'))
        .take(400)
        .find_map(|t| from_lower_host(t.trim_matches('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_domain_decides_first() {
        assert_eq!(
            detect_provider(Some("a@gmail.com"), &["x.example"], ""),
            Provider::Gmail
        );
        assert_eq!(
            detect_provider(Some("a@hotmail.com"), &[], ""),
            Provider::Microsoft
        );
    }

    #[test]
    fn google_hosts_for_other_domains_are_workspace() {
        let p = detect_provider(Some("a@corp.example"), &["aspmx.l.google.com"], "");
        assert_eq!(p, Provider::GoogleWorkspace);
        let p = detect_provider(Some("a@corp.example"), &[], "550 5.1.1 ... - gsmtp");
        assert_eq!(p, Provider::GoogleWorkspace);
    }

    #[test]
    fn lookalike_hosts_are_other() {
        assert_eq!(
            detect_provider(Some("a@x.example"), &["notoutlook.com"], ""),
            Provider::Other
        );
        assert_eq!(
            Provider::from_host("mx1.mail.icloud.com"),
            Some(Provider::Icloud)
        );
        assert_eq!(Provider::Other.as_label(), "other");
    }
}
