//! iprev (RFC 8601 §3): the client IP's PTR names must resolve back to it.

use std::net::IpAddr;

use mail_auth::IprevResult;

use super::verdict::{AuthResult, IprevCheck};
use super::{params, reason};
use crate::dns::Dns;

pub(super) async fn check(dns: &Dns, ip: IpAddr) -> IprevCheck {
    let out = dns
        .authenticator()
        .verify_iprev(params(dns.caches(), ip))
        .await;
    let (result, why) = match &out.result {
        IprevResult::Pass => (AuthResult::Pass, None),
        IprevResult::Fail(e) => (AuthResult::Fail, Some(reason(e))),
        IprevResult::TempError(e) => (AuthResult::TempError, Some(reason(e))),
        IprevResult::PermError(e) => (AuthResult::PermError, Some(reason(e))),
        IprevResult::None => (AuthResult::None, None),
    };
    let ptr = match result {
        AuthResult::Pass => out
            .ptr
            .as_ref()
            .and_then(|p| p.first())
            .map(|h| crate::dns::host_name(h)),
        _ => None,
    };
    IprevCheck {
        result,
        ptr,
        reason: why,
    }
}
