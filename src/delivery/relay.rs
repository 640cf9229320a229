//! The outbound relay, as the relay lane ([`relayed`](super::relayed)) uses it: the plan
//! for a recipient, one SMTP transaction per hop until one takes the message, and the DSN
//! a relayed recipient's failure owes its sender.
//!
//! Hops: [`plan`] gives them; each is tried in turn through the [`smtp::Pool`](super::smtp).
//! Connection, TLS or AUTH trouble and 4xx replies move on to the next hop; a 5xx to MAIL,
//! RCPT or DATA bounces the recipient at once; when every hop failed the recipient is
//! deferred (the queue's backoff decides when to try again) with every hop's error kept.
//!
//! Envelope sender: mail submitted by the ERP leaves as `bounce+TOKEN@<bounce domain>`
//! (VERP, [`TokenKey`]): the token names message and recipient, so an asynchronous bounce
//! closes the loop in [`intake`](crate::intake). Forwarded copies carry
//! their SRS sender and DSNs the null sender, both unchanged.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::mta_sts::{self, Sts};
use super::oauth2::{Registry, Tokens};
use super::plan::{self, Plan};
use super::pools::SourcePools;
use super::smtp::{Accepted, Envelope, Hop, Pool, SmtpError, Steps};
use super::{Error, dsn};
use crate::clock::Clock;
use crate::config::Config;
use crate::dns::Dns;
use crate::envelope::esmtp::{RcptParams, Ret};
use crate::envelope::{Address, Destination, ListenerKind, ReversePath, Stream};
use crate::providers::ProviderTable;
use crate::queue::{NewMessage, QueuedMessage, RcptState, Recipient};
use crate::reply;
use crate::routing::Router;
use crate::routing::srs;
use crate::routing::token::TokenKey;

/// What the relay needs; built once in `server.rs`.
pub struct Relay {
    config: Arc<Config>,
    dns: Option<Dns>,
    key: TokenKey,
    router: Arc<Router>,
    clock: Clock,
    pool: Pool,
    /// MTA-STS policies of recipient domains (direct MX); `None` = opportunistic TLS.
    sts: Option<Arc<Sts>>,
    /// The source IP pools' missing addresses (probed when this relay is built).
    pools: SourcePools,
}

impl Relay {
    pub fn new(
        config: Arc<Config>,
        dns: Option<Dns>,
        key: TokenKey,
        router: Arc<Router>,
        clock: Clock,
        tokens: Tokens,
    ) -> Relay {
        let pool = Pool::new(&config.relay, &config.server.hostname, tokens);
        let pools = SourcePools::probe(&config);
        Relay {
            config,
            dns,
            key,
            router,
            clock,
            pool,
            sts: None,
            pools,
        }
    }

    /// Direct-MX hops go under their domain's TLS policy ([`mta_sts`](super::mta_sts)).
    pub fn with_mta_sts(mut self, sts: Arc<Sts>) -> Relay {
        self.sts = Some(sts);
        self
    }

    /// The envelope sender recipient `idx` of `msg` leaves with.
    pub fn envelope_sender(&self, msg: &QueuedMessage, idx: u16) -> String {
        if msg.listener == ListenerKind::Inbound || msg.mail_from.is_empty() {
            return msg.mail_from.clone();
        }
        format!(
            "bounce+{}@{}",
            self.key.issue(msg.id, idx),
            self.config.bounce_domain()
        )
    }

    /// The plan for `to` (the recipient's address, or the original sender an SRS address
    /// encodes) of `msg`; with `providers`, the recipient's provider is placed too.
    pub async fn plan(
        &self,
        msg: &QueuedMessage,
        to: &str,
        providers: Option<&ProviderTable>,
    ) -> Result<Plan, Error> {
        let domain = to
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase();
        // from_filter matches the ERP's own sender; the null sender counts as postmaster.
        let filter_sender = if msg.mail_from.is_empty() {
            format!("postmaster@{}", self.config.bounce_domain())
        } else {
            msg.mail_from.clone()
        };
        let dns = self.dns.as_ref();
        let mut plan = plan::plan(
            &self.config,
            &self.pools,
            dns,
            providers,
            &filter_sender,
            &domain,
            msg.stream,
        )
        .await
        .map_err(|e| match e {
            plan::PlanError::Unroutable(reply) => Error::Unroutable(reply),
            plan::PlanError::Later(reason) => Error::RelayLater(reason),
        })?;
        match &self.sts {
            Some(sts) if plan.hops.first().is_some_and(mta_sts::is_direct_mx) => {
                let hops = std::mem::take(&mut plan.hops);
                plan.hops = sts.apply(&domain, hops).await.map_err(Error::RelayLater)?;
                Ok(plan)
            }
            _ => Ok(plan),
        }
    }

    /// One transaction for recipient `idx` of `msg`, to address `to`, on each of `plan`'s
    /// hops in turn until one takes or refuses it: the remote's final reply on success,
    /// with the local (sending) IP address the message left from. A source IP the host
    /// turns out to lack is replaced by the plan's next one ([`Relay::hop_send`]).
    ///
    /// A REQUIRETLS message (RFC 8689) goes to each hop with TLS required and verified
    /// ([`Hop::requiring_tls`]); when no hop met that (TLS failed or unverified, REQUIRETLS
    /// not offered) the recipient fails with 5.7.30 — never a fallback to a weaker hop.
    pub async fn send(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        to: &str,
        body: &[u8],
        plan: &Plan,
    ) -> (Result<Accepted, Error>, Option<IpAddr>) {
        let from = self.envelope_sender(msg, idx);
        let default_rcpt = RcptParams::default();
        let rcpt = msg
            .recipients
            .get(usize::from(idx))
            .map_or(&default_rcpt, |r| &r.esmtp);
        let env = Envelope {
            from: &from,
            to,
            body,
            esmtp: &msg.esmtp,
            rcpt,
        };
        let requiretls = msg.esmtp.requiretls;
        let mut failures = Vec::new();
        let mut tls_unmet = 0;
        let mut ip = None;
        let mut source = plan.source;
        for hop in &plan.hops {
            let strict;
            let hop = if requiretls {
                match hop.requiring_tls() {
                    Ok(h) => strict = h,
                    Err(e) => {
                        tracing::info!(hop = %hop.label, error = %e, "REQUIRETLS: hop not eligible");
                        tls_unmet += 1;
                        failures.push(format!("{e} [{}]", hop.label));
                        continue;
                    }
                }
                &strict
            } else {
                hop
            };
            let (result, hop_ip) = self
                .hop_send(hop, &env, plan, &mut source, msg.stream)
                .await;
            ip = hop_ip.or(ip);
            match result {
                Ok(mut accepted) => {
                    accepted.reply = format!("{} [{}]", accepted.reply, hop.label);
                    return (Ok(accepted), ip);
                }
                Err(e) if e.is_permanent() => {
                    let reply = format!("{e} [{}]", hop.label);
                    return (Err(Error::SmtpRejected(reply)), ip);
                }
                Err(e) => {
                    tracing::info!(smarthost = %hop.label, error = %e, "relay hop failed, trying the next");
                    if requiretls
                        && matches!(e, SmtpError::Tls { .. } | SmtpError::RequireTls { .. })
                    {
                        tls_unmet += 1;
                    }
                    failures.push(format!("{e} [{}]", hop.label));
                }
            }
        }
        if requiretls && tls_unmet > 0 && tls_unmet == failures.len() {
            let reply = format!("{} ({})", reply::REQUIRETLS_NOT_MET, failures.join("; "));
            return (Err(Error::SmtpRejected(reply)), ip);
        }
        (Err(Error::RelayLater(failures.join("; "))), ip)
    }

    /// One transaction to `hop` from `source`; when the host lacks that address (bind
    /// fails with `EADDRNOTAVAIL`), it is marked missing and the plan's next source IP not
    /// tried yet takes its place, for this hop and the ones after it.
    async fn hop_send(
        &self,
        hop: &Hop,
        env: &Envelope<'_>,
        plan: &Plan,
        source: &mut Option<IpAddr>,
        stream: Stream,
    ) -> (Result<Accepted, SmtpError>, Option<IpAddr>) {
        let mut hop = hop.clone();
        let mut tried = Vec::new();
        loop {
            hop.source = *source;
            let (result, ip) = self.pool.send(&hop, env).await;
            let Err(e @ SmtpError::Bind { missing: true, .. }) = &result else {
                return (result, ip);
            };
            let Some(failed) = *source else {
                return (result, ip);
            };
            self.pools.mark_missing(failed, stream, e);
            tried.push(failed);
            match plan.sources.iter().find(|s| !tried.contains(s)) {
                Some(next) => *source = Some(*next),
                None => return (result, ip),
            }
        }
    }

    /// The DSN relayed recipient `idx` of `msg` (as the queue just recorded it, in `state`)
    /// owes its sender, if any: when there is a sender to tell and the recipient's NOTIFY
    /// (RFC 3461 §4.1) asks for it (absent: failures and delays) — on a bounce, on expiry,
    /// once on the deferral that crosses `relay.delay_warning` (the only delay notion:
    /// without it no delay DSN, whatever NOTIFY says), and on success with NOTIFY=SUCCESS:
    /// `relayed` (RFC 3461 §5.2.2). Also when the hop offers DSN and got NOTIFY: it leaves
    /// with our VERP sender, so the hop's own success report comes back to us, where it
    /// is not forwarded — ours is the one the sender gets. `before`:
    /// the recipient as loaded before this attempt. Runs inside the queue's commit, so the
    /// DSN is written in the same batch as the new state ([`Queue::record_then`]).
    pub fn dsn_for(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        before: &Recipient,
        state: RcptState,
        attempt: &Attempted<'_>,
    ) -> Option<NewMessage> {
        if msg.mail_from.is_empty() {
            return None;
        }
        let params = &msg.recipients.get(usize::from(idx))?.esmtp;
        let kind = match state {
            RcptState::Bounced if params.wants_failure() => dsn::Kind::Failed,
            RcptState::Expired if params.wants_failure() => dsn::Kind::Expired,
            RcptState::Deferred if params.wants_delay() => {
                let warn = self.config.relay.delay_warning?.get().as_millis() as u64;
                // Both instants as the queue recorded them (the clock may have moved since):
                // the deferral before this attempt and this one.
                let recorded = msg.recipients.get(usize::from(idx))?.updated_ms;
                let before_ms = before.updated_ms.saturating_sub(msg.received_ms);
                let now = recorded.saturating_sub(msg.received_ms);
                if !(before_ms < warn && now >= warn) {
                    return None;
                }
                dsn::Kind::Delayed
            }
            RcptState::Sent if params.wants_success() => dsn::Kind::Relayed,
            _ => return None,
        };
        let to = self.original_sender(&msg.mail_from);
        let Some(addr) = Address::parse(&to) else {
            tracing::info!(sender = %to, "no DSN: the sender is not a deliverable address");
            return None;
        };
        // The ERP's own bounce address on one of our domains: to its route, not read as
        // one of our bounce tokens (which would swallow it).
        let feedback = self.router.feedback(&addr);
        let dest = match feedback.map_or_else(|| self.router.resolve_or_relay(&addr), Ok) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(sender = %to, error = %e, "no DSN: the sender's address takes no mail");
                return None;
            }
        };
        let failure = dsn::Failure {
            recipient: &before.address,
            reply: attempt.reply,
            kind,
            orcpt: params.orcpt.as_deref(),
        };
        // RFC 3461 §4.3: RET=FULL returns the whole message, on failures only.
        let full = msg.esmtp.ret == Some(Ret::Full)
            && matches!(kind, dsn::Kind::Failed | dsn::Kind::Expired);
        let returned = if full {
            dsn::Returned::Full(attempt.content)
        } else {
            dsn::Returned::Headers(attempt.content)
        };
        Some(self.report_to(msg, &to, addr, dest, failure, returned))
    }

    /// The bounce a recipient of `msg` that a DSN reported failed owes the ERP that sent it
    /// (`bounce_feedback`): an RFC 3464 report to the original envelope sender, routed to
    /// the sender's domain's ERP route ([`Router::feedback`](crate::routing::resolve::Router::feedback)),
    /// the category in its text. `None` for a sender not on one of our domains (it was told
    /// nothing before either: the remote MTA's DSN came to us).
    pub fn feedback_for(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        reply: &str,
        category: Option<&str>,
        headers: &[u8],
    ) -> Option<NewMessage> {
        let to = self.original_sender(&msg.mail_from);
        let addr = Address::parse(&to)?;
        let dest = self.router.feedback(&addr)?;
        let rcpt = msg.recipients.get(usize::from(idx))?;
        let reply = match category {
            Some(c) => format!("{reply} (bounce category: {c})"),
            None => reply.to_string(),
        };
        let failure = dsn::Failure {
            recipient: &rcpt.address,
            reply: &reply,
            kind: dsn::Kind::Failed,
            orcpt: rcpt.esmtp.orcpt.as_deref(),
        };
        let returned = dsn::Returned::Headers(headers);
        Some(self.report_to(msg, &to, addr, dest, failure, returned))
    }

    /// The RFC 3464 report of `failure` for `msg`, from the null sender (RFC 5321 §4.5.5: a
    /// report never bounces) to `to` (`addr`, routed to `dest`): a DSN or a bounce fed back.
    fn report_to(
        &self,
        msg: &QueuedMessage,
        to: &str,
        addr: Address,
        dest: Destination,
        failure: dsn::Failure<'_>,
        returned: dsn::Returned<'_>,
    ) -> NewMessage {
        let body = dsn::build(
            &self.config.server.hostname,
            msg,
            to,
            &[failure],
            returned,
            UNIX_EPOCH + Duration::from_millis(self.clock.now_ms()),
        );
        NewMessage {
            listener: ListenerKind::Inbound,
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: self.config.server.hostname.clone(),
            mail_from: ReversePath::Null,
            recipients: vec![(addr, dest)],
            body,
        }
    }

    /// The sender a DSN goes to: an SRS address of ours is turned back into the original.
    fn original_sender(&self, mail_from: &str) -> String {
        if let Some((local, domain)) = mail_from.rsplit_once('@')
            && domain.eq_ignore_ascii_case(self.config.bounce_domain())
        {
            let today = self.clock.now_ms() / 86_400_000;
            if let Some(orig) = srs::reverse(&self.key, local, today) {
                return orig;
            }
        }
        mail_from.to_string()
    }
}

/// What one attempt of a relayed recipient came to, as its DSN needs it.
pub struct Attempted<'a> {
    /// The attempt's reply or reason.
    pub reply: &'a str,
    /// What a DSN may return of the original: the whole message when the sender asked
    /// RET=FULL, else (at least) its header section.
    pub content: &'a [u8],
}

/// Used by `mxgate test-relay` without a running server: the summary or the failure, and
/// the steps done (token, connect, greeting, EHLO, STARTTLS, AUTH), also after a failure.
pub async fn probe_smarthost(config: &Config, name: &str) -> (Result<String, String>, Vec<String>) {
    let mut steps = Steps::recorded();
    let result = probe(config, name, &mut steps).await;
    (result, steps.lines())
}

async fn probe(config: &Config, name: &str, steps: &mut Steps) -> Result<String, String> {
    let Some(h) = config.relay.smarthosts.iter().find(|h| h.name == name) else {
        return Err(format!("no smart host named {name:?} in relay.smarthosts"));
    };
    let mut hop = plan::smarthost_hop(h).await;
    // From the source IP of the stream the host carries.
    let stream = if config.streams.mass_smarthosts.contains(&h.name) {
        Stream::Mass
    } else {
        Stream::Transactional
    };
    hop.source = config.streams.source_ip(stream);
    if hop.addrs.is_empty() {
        return Err(format!("{}: host {:?} does not resolve", hop.label, h.host));
    }
    let tokens = Registry::new(Clock::system()).tokens_for(&config.relay);
    let pool = Pool::new(&config.relay, &config.server.hostname, tokens);
    pool.probe(&hop, steps).await.map_err(|e| e.to_string())
}
