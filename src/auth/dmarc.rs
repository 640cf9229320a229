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
