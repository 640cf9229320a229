//! The config-derived half of the server: [`Runtime`] is everything built from one
//! [`Config`] (routing, sender verification, DKIM signing, TLS acceptor, relay, attempt
//! context, observer), [`Stable`] what outlives every config (stores, counters, metrics,
//! the shutdown token). The server keeps the current runtime in one
//! [`Live`](crate::live::Live); a reload builds a whole new one on the same [`Stable`] and
//! swaps it in, so nothing that holds state is ever rebuilt: the queue, the statistics,
//! the suppression list, the warming counters, suspensions and events outbox, the metrics.
//!
//! Stateful parts that also read config (events, suspensions, warming) are handles: the
//! shared state plus the config section they were built for; [`Runtime::build`] makes new
//! handles on the stable state for each config.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::auth::sign::Signer;
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::attempt::Context;
use crate::delivery::forward::Forwarder;
use crate::delivery::mta_sts::Sts;
use crate::delivery::relay::Relay;
use crate::delivery::tls_report::{Mailer, Reporter};
use crate::delivery::tls_rpt::Recorder;
use crate::delivery::warming::Warming;
use crate::dns::Dns;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::report::{Observer, Sinks};
use crate::routing::Router;
use crate::routing::token::TokenKey;
use crate::session::SessionContext;
use crate::stats::Stats;
use crate::suppression::SuppressionList;
use crate::suspension::Suspensions;

/// A config value that parsed and validated but cannot be put to work.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::Error),
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::Error),
    #[error("DKIM signing key: {0}")]
    DkimKey(#[from] crate::auth::keys::KeyError),
}

impl BuildError {
    /// The config key whose value failed (a reload reports the problem at its line).
    pub fn key(&self) -> &'static str {
        match self {
            BuildError::Tls(crate::tls::Error::Pem {
                what: "private key",
                ..
            }) => "tls.key",
            BuildError::Tls(_) => "tls.cert",
            BuildError::Dns(_) => "dns.nameservers",
            BuildError::DkimKey(_) => "dkim.keys",
        }
    }
}

/// What lives as long as the server, whatever the config says.
pub struct Stable {
    pub clock: Clock,
    pub metrics: Metrics,
    pub queue: Queue,
    pub token_key: TokenKey,
    pub suppressions: SuppressionList,
    pub stats: Stats,
    /// The outbox; each runtime has a handle with its `[events]`.
    pub events: Events,
    /// Suspensions and send windows; each runtime has a handle with its `[suspension]`.
    pub suspensions: Suspensions,
    /// Warming counters; each runtime with `[warming] enabled` has a handle with its policy.
    pub warming: Warming,
    /// The cluster's Redis (`[cluster] redis_url`); `None` = a single node.
    pub cluster: Option<crate::cluster::Cluster>,
    /// The alias tables of `validate_aliases` routes, read from the ERP, kept across reloads.
    pub erp_aliases: crate::routing::ErpAliases,
    /// OAuth2 token caches of `xoauth2` smart hosts, kept across reloads that leave a
    /// host's OAuth2 keys alone (a rotated refresh token must not be forgotten).
    pub oauth2: crate::delivery::oauth2::Registry,
    pub shutdown: CancellationToken,
}

/// Everything built from one config; replaced whole by a reload.
pub struct Runtime {
    pub config: Arc<Config>,
    /// One resolver and record cache, kept by a reload that leaves `[dns]` alone.
    pub dns: Dns,
    /// What each SMTP session works with.
    pub session: Arc<SessionContext>,
    /// What each delivery attempt works with.
    pub delivery: Arc<Context>,
    /// Where the bounce intake reports.
    pub observer: Arc<Observer>,
    /// The events outbox under this config's `[events]`.
    pub events: Arc<Events>,
    /// Sends the daily TLS-RPT reports under this config's `[relay.tls_rpt]`.
    pub tls_report: Arc<Reporter>,
}

impl Runtime {
    /// Builds everything `config` describes on `stable`, asking DNS through `dns`.
    pub fn build(config: Arc<Config>, stable: &Stable, dns: Dns) -> Result<Runtime, BuildError> {
        let s = stable;
        dns.dnssec().report_to(s.metrics.clone());
        let tls = crate::tls::acceptor(&config.tls, &config.server.hostname)?;
        let signer = Arc::new(Signer::from_config(&config)?);
        let verifier = Arc::new(Verifier::new(&config, dns.clone(), s.metrics.clone()));
        let router = Arc::new(
            Router::new(&config)
                .with_srs(s.token_key.clone(), config.bounce_domain(), s.clock.clone())
                .with_erp_aliases(s.erp_aliases.clone()),
        );
        let events = s.events.reconfigured(&config.events);
        let suspensions = s
            .suspensions
            .reconfigured(&config.suspension, events.clone());
        let warming = config
            .warming
            .enabled
            .then(|| s.warming.reconfigured(&config));
        let sinks = Sinks {
            stats: s.stats.clone(),
            events: events.clone(),
            metrics: s.metrics.clone(),
            suppressions: s.suppressions.clone(),
            suspensions: suspensions.clone(),
        };
        let observer = Observer::new(&config, sinks, s.clock.clone(), s.queue.clone());
        let forward = Forwarder::new(
            config.clone(),
            s.token_key.clone(),
            router.clone(),
            s.queue.clone(),
            s.clock.clone(),
        );
        let store = s.stats.store().clone();
        let recorder = Recorder::new(
            config.relay.tls_rpt.enabled.then(|| store.clone()),
            s.clock.clone(),
            s.metrics.clone(),
        );
        let sts = Arc::new(Sts::new(
            &config.relay,
            dns.clone(),
            store.clone(),
            s.clock.clone(),
            Some(recorder),
        ));
        let tls_report = Arc::new(Reporter::new(
            config.clone(),
            dns.clone(),
            store,
            s.clock.clone(),
            sts.clone(),
            Mailer {
                queue: s.queue.clone(),
                router: router.clone(),
                signer: signer.clone(),
            },
        ));
        let relay = Relay::new(
            config.clone(),
            Some(dns.clone()),
            s.token_key.clone(),
            router.clone(),
            s.clock.clone(),
            s.oauth2.tokens_for(&config.relay),
        )
        .with_mta_sts(sts);
        let delivery = Context::new(
            config.clone(),
            Some(forward),
            Some(Arc::new(relay)),
            warming.clone(),
            Some(observer.clone()),
        );
        let dnsbl = crate::session::dnsbl::Dnsbl::new(
            config.spam.dnsbl.clone(),
            Some(dns.clone()),
            config.dns.timeout.get(),
        );
        let session = SessionContext {
            dnsbl: Arc::new(dnsbl),
            rates: Arc::new(crate::session::rates::Rates::new(&config, &s.clock)),
            events: events.clone(),
            config: config.clone(),
            router,
            queue: s.queue.clone(),
            metrics: s.metrics.clone(),
            tls: Some(tls),
            suppressions: s.suppressions.clone(),
            suspensions,
            token_key: s.token_key.clone(),
            warming,
            signer,
            verifier,
            spam: crate::spam::Scanner::new(&config.spam, s.metrics.clone()).map(Arc::new),
            shutdown: s.shutdown.clone(),
        };
        Ok(Runtime {
            config,
            dns,
            session: Arc::new(session),
            delivery: Arc::new(delivery),
            observer: Arc::new(observer),
            events: Arc::new(events),
            tls_report,
        })
    }
}
