//! DMARC (RFC 7489): the From domain's policy, satisfied by an aligned SPF or DKIM pass.

use mail_auth::dmarc::Policy as Published;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, SpfOutput, SpfResult};

use super::verdict::{AuthResult, DmarcCheck, DmarcPolicy, SpfCheck};
use super::{params, reason};
use crate::dns::Dns;

/// `spf` is the MAIL FROM check and mail-auth's output for it (`None` when SPF is off):
/// its domain (MAIL FROM, or HELO for `<>`) is what SPF alignment compares.
pub(super) async fn check(
    dns: &Dns,
    msg: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    spf: Option<&(SpfCheck, SpfOutput)>,
) -> DmarcCheck {
    let none = SpfOutput::new(String::new()).with_result(SpfResult::None);
    let (mail_from_domain, spf) = match spf {
        Some((check, out)) => (check.domain.as_str(), out),
        None => ("", &none),
    };
    let p = DmarcParameters::new(msg, dkim, mail_from_domain, spf);
    let out = dns
        .authenticator()
        .verify_dmarc(params(dns.caches(), p))
        .await;
    // A walk cut short by a DNS failure says nothing about which names are absent.
    if !out.domain().is_empty() && !matches!(out.result(), DmarcResult::TempError(_)) {
        dns.learn_absent_txt(walk(out.domain()));
    }
    let (result, why) = match out.result() {
        DmarcResult::Pass => (AuthResult::Pass, None),
        DmarcResult::Fail(e) => (AuthResult::Fail, Some(reason(&e))),
        DmarcResult::TempError(e) => (AuthResult::TempError, Some(reason(&e))),
        DmarcResult::PermError(e) => (AuthResult::PermError, Some(reason(&e))),
        DmarcResult::None => (AuthResult::None, None),
    };
    // mail-auth reports p=none also when no record could be read: only a record we hold
    // tells the policy.
    let policy_known = out.dmarc_record().is_some();
    let policy = match out.policy() {
        Published::Reject => DmarcPolicy::Reject,
        Published::Quarantine => DmarcPolicy::Quarantine,
        Published::None | Published::Unspecified => DmarcPolicy::None,
    };
    DmarcCheck {
        result,
        header_from: out.domain().to_ascii_lowercase(),
        policy,
        policy_known,
        spf_aligned: *out.spf_result() == DmarcResult::Pass,
        dkim_aligned: *out.dkim_result() == DmarcResult::Pass,
        reason: why,
    }
}

/// The TXT names mail-auth's DMARC tree walk (RFC 9989 §4.10.1) asks for `domain` (the
/// From domain as it reports it: A-label, lower case), keyed as it keys its cache: the
/// domain itself, then — from eight labels on — the last seven, then one label fewer at a
/// time down to the top-level domain. A name we spell differently only misses the cache.
fn walk(domain: &str) -> impl Iterator<Item = String> + '_ {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    let mut count = if total < 2 { 0 } else { total };
    std::iter::from_fn(move || {
        if count == 0 {
            return None;
        }
        let name = format!("_dmarc.{}.", labels[total - count..].join("."));
        count = match count {
            1 => 0,
            c if c >= 8 => 7,
            c => c - 1,
        };
        Some(name)
    })
}

/// DMARC switched on, but the message could not be parsed: no From domain to judge.
pub(super) fn none() -> DmarcCheck {
    DmarcCheck {
        result: AuthResult::None,
        header_from: String::new(),
        policy: DmarcPolicy::None,
        policy_known: false,
        spf_aligned: false,
        dkim_aligned: false,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::walk;

    #[test]
    fn the_walk_goes_down_to_the_tld_and_jumps_to_seven_labels() {
        let names: Vec<String> = walk("mail.client.test").collect();
        assert_eq!(
            names,
            [
                "_dmarc.mail.client.test.",
                "_dmarc.client.test.",
                "_dmarc.test."
            ]
        );
        let deep: Vec<String> = walk("a.b.c.d.e.f.g.h.example.com").collect();
        assert_eq!(deep.len(), 8, "{deep:?}");
        assert_eq!(deep[0], "_dmarc.a.b.c.d.e.f.g.h.example.com.");
        assert_eq!(deep[1], "_dmarc.d.e.f.g.h.example.com.");
        assert_eq!(deep[7], "_dmarc.com.");
        assert_eq!(walk("localhost").count(), 0);
    }
}
