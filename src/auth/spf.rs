//! SPF (RFC 7208) for the HELO identity (§2.3) and the MAIL FROM identity (§2.4).

use std::net::IpAddr;

use mail_auth::spf::verify::SpfParameters;
use mail_auth::{SpfOutput, SpfResult};

use super::params;
use super::verdict::{AuthResult, SpfCheck, SpfIdentity};
use crate::dns::Dns;

/// Checks the HELO name. An address literal or empty HELO has no SPF identity: `none`.
pub(super) async fn check_helo(dns: &Dns, ip: IpAddr, helo: &str, hostname: &str) -> SpfCheck {
    if !is_domain(helo) {
        return SpfCheck {
            identity: SpfIdentity::Helo,
            result: AuthResult::None,
            subject: helo.to_string(),
            domain: String::new(),
        };
    }
    let out = dns
        .authenticator()
        .verify_spf(params(
            dns.caches(),
            SpfParameters::verify_ehlo(ip, helo, hostname),
        ))
        .await;
    SpfCheck {
        identity: SpfIdentity::Helo,
        result: result(&out),
        subject: helo.to_string(),
        domain: out.domain().to_string(),
    }
}

/// Checks the MAIL FROM address; for the null sender, `postmaster@<helo>` (RFC 7208 §2.4).
/// Also returns mail-auth's output, which DMARC needs for SPF alignment.
pub(super) async fn check_mail_from(
    dns: &Dns,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
    sender: &str,
) -> (SpfCheck, SpfOutput) {
    let sender = if sender.is_empty() {
        format!("postmaster@{helo}")
    } else {
        sender.to_string()
    };
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let out = if is_domain(domain) {
        dns.authenticator()
            .verify_spf(params(
                dns.caches(),
                SpfParameters::verify_mail_from(ip, helo, hostname, &sender),
            ))
            .await
    } else {
        SpfOutput::new(domain.to_string()).with_result(SpfResult::None)
    };
    let check = SpfCheck {
        identity: SpfIdentity::MailFrom,
        result: result(&out),
        subject: sender.clone(),
        domain: out.domain().to_string(),
    };
    (check, out)
}

fn result(out: &SpfOutput) -> AuthResult {
    match out.result() {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

/// A DNS name SPF can be evaluated for (not an address literal, not empty).
fn is_domain(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('[') && s.contains('.') && s.parse::<IpAddr>().is_err()
}
