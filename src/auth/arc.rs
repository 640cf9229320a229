//! ARC (RFC 8617): verify the chain of custody forwarders added. Reported, not enforced —
//! mxgate does not trust any sealer's results for DMARC overrides.

use mail_auth::AuthenticatedMessage;

use super::dkim::result;
use super::params;
use super::verdict::ArcCheck;
use crate::dns::Dns;

pub(super) async fn check(dns: &Dns, msg: &AuthenticatedMessage<'_>) -> ArcCheck {
    let out = dns
        .authenticator()
        .verify_arc(params(dns.caches(), msg))
        .await;
    let (result, reason) = result(out.result());
    ArcCheck {
        result,
        sets: out.sets().len(),
        reason,
    }
}
