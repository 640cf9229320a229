//! Value types for the places mxgate talks to, parsed once at load like the others in
//! [`values`](super::values): the Odoo XML-RPC endpoints, the events webhook, a smart
//! host's address and its sender filter, the private CA an HTTPS endpoint is checked
//! against. Run-time code takes these and never parses the config string again.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use hyper::Uri;

use super::values::HttpUrl;

/// An `odoo` route's base URL (`http://host:8069`, or a URL already ending in
/// `/xmlrpc/2/...`) with the two XML-RPC endpoints under it made once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OdooUrl {
    /// `/xmlrpc/2/common` (`authenticate`).
    pub common: Uri,
    /// `/xmlrpc/2/object` (`execute_kw`).
    pub object: Uri,
}

impl TryFrom<String> for OdooUrl {
    type Error = String;

    fn try_from(s: String) -> Result<OdooUrl, String> {
        let root = match s.find("/xmlrpc/") {
            Some(i) => &s[..i],
            None => s.trim_end_matches('/'),
        };
        let endpoint = |service: &str| {
            format!("{root}/xmlrpc/2/{service}")
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
                .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))
        };
        Ok(OdooUrl {
            common: endpoint("common")?,
            object: endpoint("object")?,
        })
    }
}

/// `[events] url`: empty = events off, otherwise an `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(pub Option<HttpUrl>);

impl TryFrom<String> for WebhookUrl {
    type Error = String;

    fn try_from(s: String) -> Result<WebhookUrl, String> {
        if s.is_empty() {
            return Ok(WebhookUrl(None));
        }
        HttpUrl::try_from(s).map(|u| WebhookUrl(Some(u)))
    }
}

/// `ca_file` of an HTTPS endpoint: the PEM certificates of a private CA, read at load so a
/// missing or unreadable file is a config problem at its key, not a deferred delivery. A
/// reload reads the file again (a renewed CA is picked up without a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFile {
    pub path: String,
    pub certs: Arc<Vec<CertificateDer<'static>>>,
}

impl TryFrom<String> for CaFile {
    type Error = String;

    fn try_from(path: String) -> Result<CaFile, String> {
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{path:?}: cannot read PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{path:?}: no CERTIFICATE block in the file"));
        }
        Ok(CaFile {
            path,
            certs: Arc::new(certs),
        })
    }
}

/// How mxgate checks the certificate of one HTTPS endpoint (a route, `[events]`): the
/// `ca_file` and `tls_verify` keys of that table, together.
#[derive(Clone, Debug, Default)]
pub struct HttpsTrust<'a> {
    /// Trusted besides the webpki and system roots.
    pub ca_file: Option<&'a CaFile>,
    /// `tls_verify = false`: any certificate (still an encrypted session); logged at start.
    pub insecure: bool,
}

/// A smart host's `host`: an IP address (connected to as is) or a name the system
/// resolver looks up at each connection (as Postfix's relayhost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAddr {
    Ip(IpAddr),
    Name(String),
}

impl TryFrom<String> for HostAddr {
    type Error = String;

    fn try_from(s: String) -> Result<HostAddr, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        let literal = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(HostAddr::Ip(ip));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if t.len() > 253 || !t.trim_end_matches('.').split('.').all(label_ok) {
            return Err(format!("{s:?} is not a host name or an IP address"));
        }
        Ok(HostAddr::Name(t.to_owned()))
    }
}

/// A smart host's `from_filter`: which senders it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderFilter {
    /// Empty: every sender.
    Any,
    /// `"@example.test"` or `"example.test"`: the domain (lower case).
    Domain(String),
    /// `"news@example.test"`: that address (lower case).
    Address(String),
}

impl TryFrom<String> for SenderFilter {
    type Error = String;

    fn try_from(s: String) -> Result<SenderFilter, String> {
        let f = s.trim().to_ascii_lowercase();
        Ok(match f.strip_prefix('@') {
            _ if f.is_empty() => SenderFilter::Any,
            Some(domain) => SenderFilter::Domain(domain.to_owned()),
            None if f.contains('@') => SenderFilter::Address(f),
            None => SenderFilter::Domain(f),
        })
    }
}

impl SenderFilter {
    /// Whether envelope/header sender `from` (`local@domain`) matches, case-insensitively.
    pub fn matches(&self, from: &str) -> bool {
        let domain_is = |d: &str| {
            from.rsplit_once('@')
                .is_some_and(|(_, fd)| fd.eq_ignore_ascii_case(d))
        };
        match self {
            SenderFilter::Any => true,
            SenderFilter::Domain(d) => domain_is(d),
            SenderFilter::Address(a) => from.eq_ignore_ascii_case(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odoo_urls_give_both_endpoints_from_a_base_or_a_full_url() {
        let u = OdooUrl::try_from("http://erp.test:8069/".to_string()).expect("url");
        assert_eq!(u.object.to_string(), "http://erp.test:8069/xmlrpc/2/object");
        assert_eq!(u.common.to_string(), "http://erp.test:8069/xmlrpc/2/common");
        let u = OdooUrl::try_from("http://erp.test:8069/xmlrpc/2/object".to_string()).expect("url");
        assert_eq!(u.common.to_string(), "http://erp.test:8069/xmlrpc/2/common");
        assert!(OdooUrl::try_from("erp.test:8069".to_string()).is_err());
        assert!(OdooUrl::try_from("ftp://erp.test".to_string()).is_err());
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        let h = |s: &str| HostAddr::try_from(s.to_string());
        assert_eq!(h("127.0.0.1"), Ok(HostAddr::Ip([127, 0, 0, 1].into())));
        assert_eq!(h("[::1]"), Ok(HostAddr::Ip("::1".parse().expect("ip"))));
        assert_eq!(
            h("smtp.relay.test"),
            Ok(HostAddr::Name("smtp.relay.test".into()))
        );
        for bad in ["", "  ", "smtp relay", "a..b", "host:25"] {
            assert!(h(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sender_filters_match_domains_and_addresses_case_insensitively() {
        let f = |s: &str| SenderFilter::try_from(s.to_string()).expect("filter");
        assert!(f("").matches("anyone@anywhere.test"));
        assert!(f("@Example.test").matches("a@EXAMPLE.TEST"));
        assert!(f("example.test").matches("a@example.test"));
        assert!(!f("@example.test").matches("a@sub.example.test"));
        assert!(f("News@example.test").matches("news@Example.Test"));
        assert!(!f("news@example.test").matches("info@example.test"));
    }
}
