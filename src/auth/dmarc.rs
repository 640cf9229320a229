//! DMARC (RFC 7489): the From domain's policy, satisfied by an aligned SPF or DKIM pass.

use mail_auth::dmarc::Policy as Published;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, SpfOutput};

use super::verdict::{AuthResult, DmarcCheck, DmarcPolicy};
use super::{params, reason};
use crate::dns::Dns;

/// `mail_from_domain` is the domain SPF evaluated (MAIL FROM, or HELO for `<>`).
pub(super) async fn check(
    dns: &Dns,
    msg: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    mail_from_domain: &str,
    spf: &SpfOutput,
) -> DmarcCheck {
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
    let policy = match out.policy() {
        Published::Reject => DmarcPolicy::Reject,
        Published::Quarantine => DmarcPolicy::Quarantine,
        Published::None | Published::Unspecified => DmarcPolicy::None,
    };
    DmarcCheck {
        result,
        header_from: out.domain().to_ascii_lowercase(),
        policy,
        spf_aligned: *out.spf_result() == DmarcResult::Pass,
        dkim_aligned: *out.dkim_result() == DmarcResult::Pass,
        reason: why,
    }
}
