//! Stage ② — who sent it: SPF, DKIM, DMARC, ARC and iprev on inbound mail, and outbound
//! DKIM signing ([`sign::Signer`]).
//!
//! Input: client IP, HELO, MAIL FROM and the raw message, after DATA and before enqueue.
//! Output: an [`AuthVerdict`] — rendered as the RFC 8601 `Authentication-Results` header
//! ([`AuthVerdict::header`]), as the ERP's `X-Mxgate-Auth` ([`AuthVerdict::erp_header`]),
//! and judged per alias domain ([`AuthVerdict::policy`] → [`Policy`]).
//!
//! Invariants: [`Verifier::verify`] never panics and never fails — DNS trouble is
//! `temperror`, which is at worst a 451, never a permanent refusal; every verdict is
//! counted in `mxgate_auth_results_total{method,result}`.
//!
//! In the session, after DATA ([`crate::session`]'s `verify.rs`):
//! ```text
//! let verdict = ctx.verifier.verify(peer_ip, helo, &mail_from, &raw).await;
//! match verdict.policy_for(recipient_domains) {
//!     Policy::Reject { reply, .. } | Policy::TempFail(reply) => reply,
//!     Policy::Accept | Policy::Quarantine => {
//!         let raw = auth::strip_forged_results(raw, hostname);
//!         prepend "X-Mxgate-Auth: " + verdict.erp_header(q) and verdict.header(hostname, q)
//!     }
//! }
//! ```
//! The ERP push reads `X-Mxgate-Auth` back from the top of the stored message
//! ([`erp_header_of`]): the queue keeps the message, not the verdict.

mod arc;
mod dkim;
mod dmarc;
mod iprev;
pub mod keys;
mod policy;
mod results_header;
pub mod sign;
mod spf;
mod verdict;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mail_auth::{AuthenticatedMessage, MX, Parameters, RecordSet, Txt};

use crate::config::{AuthConfig, Config};
use crate::dns::{Caches, Dns, TtlCache};
use crate::envelope::ReversePath;
use crate::metrics::Metrics;

pub use policy::Policy;
pub use results_header::{ERP_FIELD, erp_header_of, strip_forged_results};
pub use verdict::{
    ArcCheck, AuthResult, AuthVerdict, DkimCheck, DmarcCheck, DmarcPolicy, IprevCheck, SpfCheck,
    SpfIdentity,
};

/// Runs the inbound checks. Built once per server; shared by every session.
pub struct Verifier {
    dns: Dns,
    methods: AuthConfig,
    /// Our hostname, named in SPF evaluation (`%{r}` macro) — the authserv-id.
    hostname: String,
    metrics: Metrics,
}

impl Verifier {
    pub fn new(config: &Config, dns: Dns, metrics: Metrics) -> Verifier {
        Verifier {
            dns,
            methods: config.auth.clone(),
            hostname: config.server.hostname.clone(),
            metrics,
        }
    }

    /// Every enabled check on one message, bounded by `auth.timeout`; counted in metrics.
    pub async fn verify(
        &self,
        peer_ip: IpAddr,
        helo: &str,
        mail_from: &ReversePath,
        raw: &[u8],
    ) -> AuthVerdict {
        let verdict = match tokio::time::timeout(
            self.methods.timeout.get(),
            self.run(peer_ip, helo, mail_from, raw),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => {
                tracing::info!(peer = %peer_ip, "authentication checks timed out");
                self.timed_out(peer_ip, helo, mail_from)
            }
        };
        for (method, result) in verdict.metric_labels() {
            self.metrics.auth_result(method, result);
        }
        verdict
    }

    async fn run(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &ReversePath,
        raw: &[u8],
    ) -> AuthVerdict {
        let m = &self.methods;
        let sender = mail_from.to_string();
        let msg = if m.dkim || m.arc || m.dmarc {
            AuthenticatedMessage::parse(raw)
        } else {
            None
        };
        let dns = &self.dns;
        let host = self.hostname.as_str();
        let need_spf = m.spf || m.dmarc;
        let (spf_helo, spf_mail, dkim_out, arc, iprev) = tokio::join!(
            async {
                if m.spf {
                    Some(spf::check_helo(dns, ip, helo, host).await)
                } else {
                    None
                }
            },
            async {
                if need_spf {
                    Some(spf::check_mail_from(dns, ip, helo, host, &sender).await)
                } else {
                    None
                }
            },
            async {
                match &msg {
                    Some(msg) if m.dkim || m.dmarc => dkim::verify(dns, msg).await,
                    _ => Vec::new(),
                }
            },
            async {
                match &msg {
                    Some(msg) if m.arc => Some(arc::check(dns, msg).await),
                    None if m.arc => Some(ArcCheck {
                        result: AuthResult::None,
                        sets: 0,
                        reason: None,
                    }),
                    _ => None,
                }
            },
            async {
                if m.iprev {
                    Some(iprev::check(dns, ip).await)
                } else {
                    None
                }
            },
        );
        let dmarc = match (&msg, m.dmarc) {
            (Some(msg), true) => Some(dmarc::check(dns, msg, &dkim_out, spf_mail.as_ref()).await),
            (None, true) => Some(dmarc::none()),
            _ => None,
        };
        AuthVerdict {
            peer_ip: ip,
            spf_helo,
            spf_mail_from: spf_mail.filter(|_| m.spf).map(|(c, _)| c),
            dkim: if m.dkim {
                dkim::checks(&dkim_out)
            } else {
                Vec::new()
            },
            dmarc,
            arc,
            iprev,
        }
    }

    /// The verdict when the deadline passed: every enabled method is temperror.
    fn timed_out(&self, ip: IpAddr, helo: &str, mail_from: &ReversePath) -> AuthVerdict {
        let m = &self.methods;
        let t = AuthResult::TempError;
        let why = || Some("timed out".to_string());
        let spf = |identity, subject: String| SpfCheck {
            identity,
            result: t,
            subject,
            domain: String::new(),
        };
        AuthVerdict {
            peer_ip: ip,
            spf_helo: m.spf.then(|| spf(SpfIdentity::Helo, helo.to_string())),
            spf_mail_from: m
                .spf
                .then(|| spf(SpfIdentity::MailFrom, mail_from.to_string())),
            dkim: if m.dkim {
                vec![DkimCheck {
                    result: t,
                    reason: why(),
                    ..dkim::none()
                }]
            } else {
                Vec::new()
            },
            dmarc: m.dmarc.then(|| DmarcCheck {
                result: t,
                header_from: String::new(),
                policy: DmarcPolicy::None,
                policy_known: false,
                spf_aligned: false,
                dkim_aligned: false,
                reason: why(),
            }),
            arc: m.arc.then(|| ArcCheck {
                result: t,
                sets: 0,
                reason: why(),
            }),
            iprev: m.iprev.then(|| IprevCheck {
                result: t,
                ptr: None,
                reason: why(),
            }),
        }
    }
}

/// SPF (RFC 7208) of `domain` for mail from `ip` with MAIL FROM `postmaster@domain`: does
/// the published record cover that address? (`mxgate dns-check`.)
pub async fn spf_covers(dns: &Dns, ip: IpAddr, domain: &str, hostname: &str) -> AuthResult {
    let sender = format!("postmaster@{domain}");
    spf::check_mail_from(dns, ip, hostname, hostname, &sender)
        .await
        .0
        .result
}

type CachedParams<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

/// mail-auth parameters that read and fill the shared parsed-record caches.
fn params<P>(c: &Caches, params: P) -> CachedParams<'_, P> {
    Parameters {
        params,
        cache_txt: Some(&c.txt),
        cache_mx: Some(&c.mx),
        cache_ptr: Some(&c.ptr),
        cache_ipv4: Some(&c.ipv4),
        cache_ipv6: Some(&c.ipv6),
    }
}

/// A mail-auth error as header-comment text.
fn reason(e: &mail_auth::Error) -> String {
    let s = e.to_string();
    let s = s.strip_prefix("DNS resolution error: ").unwrap_or(&s);
    s.chars()
        .filter(|c| !matches!(c, '(' | ')' | '\r' | '\n'))
        .take(120)
        .collect()
}
