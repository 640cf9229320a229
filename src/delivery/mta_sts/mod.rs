//! MTA-STS (RFC 8461) for direct-MX delivery: a recipient domain's policy in, the MX
//! [`Hop`]s it allows out, each carrying the [`SessionPolicy`] its session runs under.
//!
//! - Discovery (§3.1, §5.1): the `_mta-sts.<domain>` TXT record's `id`. A cached policy
//!   ([`cache`], in the store, so it survives restarts) is used while it lives (`max_age`)
//!   and the id is unchanged — also when the TXT lookup fails or the record is gone, as
//!   §5 asks; a new id or an expired policy is fetched ([`fetch`]) and parsed
//!   ([`rfc8461`]). A failed fetch keeps a live cached policy, else counts as no policy
//!   (and is reported to TLS-RPT).
//! - `enforce` (§5): only MX hosts the policy names, STARTTLS required, and the
//!   certificate must be valid for the MX host name ([`tls_policy`](super::tls_policy));
//!   any failure defers the recipient with the reason. There is no fallback to plaintext
//!   or to an unverified session.
//! - `testing`: delivered as without a policy; failures are only reported.
//! - `[relay.tls_policy]` overrides a domain: `none` (ignore MTA-STS), `testing` (never
//!   refuse) or `enforce` (verified TLS even without a published policy).

mod cache;
mod fetch;
pub mod rfc8461;

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;

use self::rfc8461::{Mode, Policy};
use super::smtp::{Hop, TlsMode};
use super::tls_policy::{self, SessionPolicy};
use super::tls_rpt::{PolicyType, Recorder, ResultType};
use crate::clock::Clock;
use crate::config::{MtaStsConfig, TlsPolicyOverride};
use crate::dns::Dns;
use crate::http_client::ResolvingClient;
use crate::stats::store::Store;

pub use cache::Cached;

/// What is known of a domain's policy at one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No policy published (or mode `none`).
    None,
    /// A valid policy (fresh from the cache or just fetched), and its text.
    Policy(Policy, String),
    /// A policy is announced but none could be had, and none is cached.
    Failed(ResultType, String),
}

/// Policies of recipient domains; built per config in `server.rs`.
pub struct Sts {
    cfg: MtaStsConfig,
    overrides: BTreeMap<String, TlsPolicyOverride>,
    dns: Dns,
    client: ResolvingClient,
    store: Store,
    clock: Clock,
    verifier: Arc<WebPkiServerVerifier>,
    recorder: Option<Recorder>,
}

impl Sts {
    pub fn new(
        cfg: &crate::config::RelayConfig,
        dns: Dns,
        store: Store,
        clock: Clock,
        recorder: Option<Recorder>,
    ) -> Sts {
        let sts = &cfg.mta_sts;
        let client =
            crate::http_client::resolving_client("relay.mta_sts", &sts.trust(), dns.clone());
        let ca = sts.ca_file.as_ref().and_then(|c| c.get());
        Sts {
            cfg: sts.clone(),
            overrides: cfg
                .tls_policy
                .iter()
                .map(|(d, o)| (d.to_ascii_lowercase(), *o))
                .collect(),
            dns,
            client,
            store,
            clock,
            verifier: tls_policy::verifier(ca),
            recorder,
        }
    }

    /// The MX `hops` of recipient domain `domain` under its policy: each with the
    /// [`SessionPolicy`] its session runs under, only those the policy allows. `Err`: the
    /// recipient must wait (the deferral reason).
    pub async fn apply(&self, domain: &str, mut hops: Vec<Hop>) -> Result<Vec<Hop>, String> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let over = self.overrides.get(&domain).copied();
        let found = match over {
            Some(TlsPolicyOverride::None) => Found::None,
            _ if !self.cfg.enabled && over.is_none() => Found::None,
            _ => self.find(&domain).await,
        };
        let forced = over == Some(TlsPolicyOverride::Enforce);
        let (policy, enforce) = match found {
            Found::Policy(p, text) if p.mode != Mode::None => {
                let enforce =
                    forced || (p.mode == Mode::Enforce && over != Some(TlsPolicyOverride::Testing));
                (Some((p, text)), enforce)
            }
            Found::Failed(result, reason) => {
                if let Some(r) = &self.recorder {
                    r.record(&domain, PolicyType::Sts, "", Some(result));
                }
                if forced {
                    return Err(format!(
                        "MTA-STS policy of {domain} (relay.tls_policy enforce): {} ({reason})",
                        result.as_str()
                    ));
                }
                tracing::info!(%domain, %reason, "MTA-STS: no usable policy, delivering without");
                (None, false)
            }
            _ => (None, forced),
        };
        let session = match (&policy, enforce) {
            (None, false) => SessionPolicy::none(&domain, self.recorder.clone()),
            (None, true) => SessionPolicy::checked(
                &domain,
                PolicyType::NoPolicyFound,
                true,
                self.verifier.clone(),
                self.recorder.clone(),
                format!("relay.tls_policy of {domain} (enforce)"),
            ),
            (Some(_), _) => SessionPolicy::checked(
                &domain,
                PolicyType::Sts,
                enforce,
                self.verifier.clone(),
                self.recorder.clone(),
                format!(
                    "MTA-STS policy of {domain} ({})",
                    if enforce { "enforce" } else { "testing" }
                ),
            ),
        };
        if enforce {
            if let Some((p, _)) = &policy {
                let all: Vec<String> = hops.iter().map(|h| h.host.clone()).collect();
                // RFC 8461 §2: a host with TLSA records is DANE's to judge (its policy
                // is ignored for that host), so the policy's mx list does not drop it.
                hops.retain(|h| h.dane.is_some() || p.matches(&h.host));
                if hops.is_empty() {
                    return Err(format!(
                        "{}: no MX host matches the policy (mx: {}; MX hosts: {})",
                        session.label,
                        p.mx.join(", "),
                        all.join(", ")
                    ));
                }
            }
            // STARTTLS required: a host that does not offer it fails, no plaintext.
            for hop in &mut hops {
                hop.tls = TlsMode::StartTls;
            }
        }
        let session = Arc::new(session);
        let ca = self.cfg.ca_file.as_ref().and_then(|c| c.get());
        for hop in &mut hops {
            hop.tls_policy = Some(session.clone());
            // RFC 8689 §4.2.1: a policy (enforce or testing) naming the host lets it take
            // REQUIRETLS mail, its certificate then verified with the policy's trust.
            hop.sts_authorised = policy.as_ref().is_some_and(|(p, _)| p.matches(&hop.host));
            hop.ca_file = ca.cloned();
        }
        Ok(hops)
    }

    /// §5.1: the policy of `domain` now, from the cache or fetched.
    pub async fn find(&self, domain: &str) -> Found {
        let now = self.clock.now_ms();
        let fresh = cache::get(&self.store, domain).filter(|c| c.expires_ms > now);
        let id = match self.dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(txts) => rfc8461::record_id(&txts).ok(),
            Err(e) => {
                tracing::info!(domain, error = %e, "MTA-STS: TXT lookup failed");
                None
            }
        };
        let Some(id) = id else {
            return fresh.map_or(Found::None, |c| parsed(&c));
        };
        if let Some(c) = fresh.as_ref().filter(|c| c.id == id) {
            return parsed(c);
        }
        let fetched = fetch::fetch(
            &self.client,
            domain,
            self.cfg.policy_port,
            self.cfg.fetch_timeout.get(),
        )
        .await;
        let failed = match fetched {
            Ok(text) => match Policy::parse(&text) {
                Ok(policy) => {
                    let c = Cached {
                        id,
                        text: text.clone(),
                        fetched_ms: now,
                        expires_ms: now.saturating_add(policy.max_age.saturating_mul(1000)),
                    };
                    cache::put(&self.store, domain, &c);
                    tracing::info!(domain, id = %c.id, mode = policy.mode.as_str(), "MTA-STS policy fetched");
                    return Found::Policy(policy, text);
                }
                Err(e) => Found::Failed(ResultType::StsPolicyInvalid, e.to_string()),
            },
            Err(e) => Found::Failed(e.result, e.reason),
        };
        // A live cached policy outlasts a failed refresh (§5.1).
        fresh.map_or(failed, |c| parsed(&c))
    }

    /// What a TLS-RPT report says of `domain`'s `sts` policy: the cached one.
    pub fn description(&self, domain: &str) -> Option<super::tls_rpt::rfc8460::StsDescription> {
        let c = cache::get(&self.store, domain)?;
        let p = Policy::parse(&c.text).ok()?;
        Some(super::tls_rpt::rfc8460::StsDescription {
            policy_string: c
                .text
                .lines()
                .map(|l| l.trim_end_matches('\r').to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            mx_host: p.mx,
        })
    }
}

fn parsed(c: &Cached) -> Found {
    match Policy::parse(&c.text) {
        Ok(p) => Found::Policy(p, c.text.clone()),
        Err(e) => Found::Failed(ResultType::StsPolicyInvalid, e.to_string()),
    }
}

/// Whether `hop` is a direct-MX hop ([`plan`](super::plan) names their destination
/// `mx:<domain>`): only those are under the recipient domain's policy.
pub fn is_direct_mx(hop: &Hop) -> bool {
    hop.dest.starts_with("mx:")
}
