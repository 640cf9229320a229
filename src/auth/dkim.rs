//! DKIM (RFC 6376): verify every DKIM-Signature of the message.

use base64::Engine;
use mail_auth::dkim::DkimError;
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult};

use super::verdict::{AuthResult, DkimCheck};
use super::{params, reason};
use crate::dns::Dns;

/// One mail-auth output per signature (DMARC needs them) — empty for an unsigned message.
pub(super) async fn verify<'x>(
    dns: &'x Dns,
    msg: &'x AuthenticatedMessage<'x>,
) -> Vec<DkimOutput<'x>> {
    dns.authenticator()
        .verify_dkim(params(dns.caches(), msg))
        .await
}

/// The owned per-signature checks; `[dkim=none]` when there is no signature at all.
pub(super) fn checks(outputs: &[DkimOutput<'_>]) -> Vec<DkimCheck> {
    if outputs.is_empty() {
        return vec![none()];
    }
    outputs
        .iter()
        .map(|o| {
            let (result, reason) = result(o.result());
            let (domain, selector, b_prefix) = match o.signature() {
                Some(s) => {
                    let prefix = s.b.get(..6).unwrap_or(&s.b);
                    let b = base64::engine::general_purpose::STANDARD.encode(prefix);
                    (s.d.to_ascii_lowercase(), s.s.clone(), b)
                }
                None => Default::default(),
            };
            DkimCheck {
                result,
                domain,
                selector,
                b_prefix,
                reason,
            }
        })
        .collect()
}

pub(super) fn none() -> DkimCheck {
    DkimCheck {
        result: AuthResult::None,
        domain: String::new(),
        selector: String::new(),
        b_prefix: String::new(),
        reason: None,
    }
}

/// mail-auth's DKIM/ARC result as an RFC 8601 result plus the reason for the comment.
pub(super) fn result(r: &DkimResult) -> (AuthResult, Option<String>) {
    match r {
        DkimResult::Pass => (AuthResult::Pass, None),
        // RFC 6376 §3.7: a body hash mismatch is PERMFAIL — RFC 8601 `fail` (mail-auth
        // says neutral). The message was changed after signing.
        DkimResult::Neutral(e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (AuthResult::Fail, Some(reason(e)))
        }
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(reason(e))),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(reason(e))),
        DkimResult::PermError(e) => (AuthResult::PermError, Some(reason(e))),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(reason(e))),
        DkimResult::None => (AuthResult::None, None),
    }
}
