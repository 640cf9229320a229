//! What an alias domain does with a verdict: [`Policy`].
//!
//! Order of precedence: DMARC (the sender's own published wish, RFC 7489 §6.3), then the
//! optional local SPF `-all` rejection. A DNS temperror never becomes a permanent refusal:
//! at worst it is `451` so the sender retries (RFC 7489 §6.6.3).

use super::verdict::{AuthResult, AuthVerdict, DmarcPolicy};
use crate::config::{DomainConfig, TempErrorAction};
use crate::reply::{self, Reply};

/// The disposition of one message for one alias domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    /// Deliver, tagged: DMARC failed with `p=quarantine` (or `p=reject` while the domain's
    /// `dmarc_enforce` is off). `X-Mxgate-Auth` carries `disposition=quarantine` and the
    /// Authentication-Results comment `dis=quarantine`.
    Quarantine,
    /// Refuse after DATA with this 5xx; `reason` is the `mxgate_inbound_messages_total`
    /// label (`dmarc` or `spf`).
    Reject {
        reply: Reply,
        reason: &'static str,
    },
    /// Refuse after DATA with this 4xx: the sender retries.
    TempFail(Reply),
}

impl Policy {
    fn severity(&self) -> u8 {
        match self {
            Policy::Accept => 0,
            Policy::Quarantine => 1,
            Policy::TempFail(_) => 2,
            Policy::Reject { .. } => 3,
        }
    }

    /// The stricter of two policies (for a message to several alias domains).
    pub fn stricter(self, other: Policy) -> Policy {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl AuthVerdict {
    /// The disposition for recipients in `domain`.
    pub fn policy(&self, domain: &DomainConfig) -> Policy {
        let tempfail_ok = domain.auth_temperror == TempErrorAction::Tempfail;
        let mut policy = Policy::Accept;
        let mut dmarc_pass = false;
        if let Some(d) = &self.dmarc {
            dmarc_pass = d.result == AuthResult::Pass;
            match (d.result, d.policy) {
                (AuthResult::Fail, DmarcPolicy::Reject) if domain.dmarc_enforce => {
                    return Policy::Reject {
                        reply: reply::DMARC_REJECT.with_text(format!(
                            "Rejected by DMARC policy of {}: {}",
                            printable(&d.header_from),
                            "no aligned SPF or DKIM pass"
                        )),
                        reason: "dmarc",
                    };
                }
                (AuthResult::Fail, DmarcPolicy::Reject | DmarcPolicy::Quarantine) => {
                    policy = Policy::Quarantine;
                }
                // The policy could not be learnt, or it asks for enforcement and the
                // outcome hung on a lookup that failed: ask the sender to retry
                // (RFC 7489 §6.6.3). A record known to say p=none needs no retry.
                (AuthResult::TempError, p)
                    if domain.dmarc_enforce
                        && tempfail_ok
                        && (p != DmarcPolicy::None || !d.policy_known) =>
                {
                    policy = Policy::TempFail(reply::AUTH_TEMPFAIL.with_text(format!(
                        "Temporary DNS failure evaluating DMARC for {}, try again later",
                        printable(&d.header_from)
                    )));
                }
                _ => {}
            }
        }
        // RFC 7489 §10.1: an SPF `-all` is not acted on before DMARC had its say — a
        // forwarded message keeps passing DMARC through its DKIM signature.
        if domain.spf_reject
            && !dmarc_pass
            && let Some(spf) = &self.spf_mail_from
        {
            match spf.result {
                AuthResult::Fail => {
                    return Policy::Reject {
                        reply: reply::SPF_FAIL.with_text(format!(
                            "SPF validation failed: {} does not permit {} to send for {}",
                            printable(&spf.domain),
                            self.peer_ip,
                            printable(&spf.subject)
                        )),
                        reason: "spf",
                    };
                }
                AuthResult::TempError if tempfail_ok => {
                    policy =
                        policy.stricter(Policy::TempFail(reply::AUTH_TEMPFAIL.with_text(format!(
                            "Temporary DNS failure evaluating SPF for {}, try again later",
                            printable(&spf.domain)
                        ))));
                }
                _ => {}
            }
        }
        policy
    }

    /// The strictest disposition over the alias domains of a message's recipients.
    pub fn policy_for<'a>(&self, domains: impl IntoIterator<Item = &'a DomainConfig>) -> Policy {
        domains
            .into_iter()
            .fold(Policy::Accept, |p, d| p.stricter(self.policy(d)))
    }
}

/// Peer-controlled text going into a reply line: printable ASCII only, bounded.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(253)
        .collect()
}
