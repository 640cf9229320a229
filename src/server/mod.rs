//! The only place the stages are wired together: [`Server::start`] builds the shared
//! infrastructure (TLS, queue, metrics, router), binds every configured listener, starts the
//! delivery worker and the admin HTTP server, and returns a [`Running`] handle.
//!
//! Shutdown order (SIGTERM or [`Running::shutdown`]): cancel the token → listeners stop
//! accepting, idle sessions get 421 4.3.2, busy ones finish their reply first; the worker
//! finishes in-flight attempts → wait for all tasks up to `server.shutdown_timeout` →
//! close the queue (RocksDB flushed) last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bounce::intake::Intake;
use crate::clock::Clock;
use crate::config::{Config, ListenerConfig};
use crate::delivery::Worker;
use crate::envelope::ListenerKind;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::routing::Router;
use crate::routing::token::TokenKey;
use crate::session::{self, SessionContext};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::Error),
    #[error("queue store: {0}")]
    Queue(#[from] crate::queue::StoreError),
    #[error("cannot read or create the VERP token key {path}: {source}")]
    TokenKey {
        path: String,
        source: std::io::Error,
    },
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::Error),
    #[error("DKIM signing key: {0}")]
    DkimKey(#[from] crate::auth::keys::KeyError),
    #[error("{0}")]
    Suppressions(#[from] crate::bounce::suppress::SuppressError),
    #[error("statistics store: {0}")]
    Stats(#[from] crate::stats::StatsError),
    #[error("{0}")]
    Warming(#[from] crate::delivery::warming::WarmingError),
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server: its bound addresses and the means to stop it.
pub struct Running {
    pub inbound: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub queue: Queue,
    /// Addresses not mailed any more (hard bounces, complaints, unsubscribes, operators).
    pub suppressions: crate::bounce::SuppressionList,
    /// Sending domains suspended for their bounce rate.
    pub suspensions: crate::bounce::suspend::Suspensions,
    pub metrics: Metrics,
    /// Hourly delivery/bounce statistics (dashboard, `/api/bounces/...`).
    pub stats: crate::stats::Stats,
    /// The ERP events outbox (`[events]`).
    pub events: crate::events::Events,
    pub clock: Clock,
    /// Warming caps and provider rates (`None` = `[warming] enabled` is off).
    pub warming: Option<crate::delivery::warming::Warming>,
    /// Signs and checks `bounce+TOKEN` VERP tokens.
    pub token_key: TokenKey,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

pub struct Server;

impl Server {
    /// Starts everything `config` describes, on the system clock.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        Server::start_with_clock(config, Clock::system()).await
    }

    /// As [`Server::start`], with a clock tests can step.
    pub async fn start_with_clock(config: Config, clock: Clock) -> Result<Running, StartError> {
        let config = Arc::new(config);
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let tls = crate::tls::acceptor(&config.tls, &config.server.hostname)?;
        let metrics = Metrics::new();
        let key_path = data_dir.join("verp.key");
        let token_key =
            TokenKey::load_or_create(&key_path).map_err(|source| StartError::TokenKey {
                path: key_path.display().to_string(),
                source,
            })?;
        let queue = Queue::open(
            &data_dir.join("queue"),
            config.queue.clone(),
            clock.clone(),
            metrics.clone(),
        )?;
        let suppressions =
            crate::bounce::SuppressionList::open(&data_dir.join("suppressions"), clock.clone())?;
        // One resolver (and parsed-record cache) for the whole server.
        let dns = crate::dns::Dns::from_config(&config.dns)?;
        let verifier = Arc::new(crate::auth::Verifier::new(
            &config,
            dns.clone(),
            metrics.clone(),
        ));
        let signer = Arc::new(crate::auth::sign::Signer::from_config(&config)?);
        let router = Arc::new(Router::new(&config).with_srs(
            token_key.clone(),
            config.bounce_domain(),
            clock.clone(),
        ));
        let stats = crate::stats::Stats::open(&data_dir, clock.clone())?;
        let warming = crate::delivery::warming::Warming::open(
            &data_dir.join("warming"),
            &config,
            clock.clone(),
            metrics.clone(),
        )?;
        let events =
            crate::events::Events::new(&config.events, stats.store().clone(), clock.clone())?;
        let observer = crate::stats::observe::Observer::new(
            &config,
            stats.clone(),
            events.clone(),
            metrics.clone(),
            clock.clone(),
            queue.clone(),
        )
        .with_suppressions(suppressions.clone());
        let suspensions = crate::bounce::suspend::Suspensions::open(
            config.suspension.clone(),
            stats.store().clone(),
            clock.clone(),
            metrics.clone(),
            events.clone(),
        )?;
        let observer = observer.with_suspensions(suspensions.clone());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = Arc::new(SessionContext {
            config: config.clone(),
            router: router.clone(),
            queue: queue.clone(),
            metrics: metrics.clone(),
            tls: Some(tls),
            suppressions: suppressions.clone(),
            suspensions: suspensions.clone(),
            token_key: token_key.clone(),
            warming: warming.clone(),
            signer,
            verifier,
            shutdown: shutdown.clone(),
        });

        let l = &config.listeners;
        let inbound = spawn_listener(ListenerKind::Inbound, &l.inbound, &ctx, &tracker).await?;
        let submission =
            spawn_listener(ListenerKind::Submission, &l.submission, &ctx, &tracker).await?;
        let submissions =
            spawn_listener(ListenerKind::Submissions, &l.submissions, &ctx, &tracker).await?;

        let worker = Worker::new(
            queue.clone(),
            config.clone(),
            metrics.clone(),
            clock.clone(),
        )
        .with_relay(crate::delivery::relay::Relay::new(
            config.clone(),
            Some(dns),
            token_key.clone(),
            router,
            queue.clone(),
            clock.clone(),
        ))
        .with_observer(observer.clone())
        .with_warming(warming.clone());
        tracker.spawn(worker.run(shutdown.clone()));
        tracker.spawn(events.clone().run(shutdown.clone()));
        tracker.spawn(stats.clone().run_pruner(
            config.queue.expire_after.get() + crate::stats::SENT_FROM_GRACE,
            shutdown.clone(),
        ));
        let intake = Intake::new(
            queue.clone(),
            token_key.clone(),
            metrics.clone(),
            suppressions.clone(),
        )
        .with_observer(observer);
        tracker.spawn(intake.run(shutdown.clone()));

        let admin = bind("admin", config.admin.bind).await?;
        let admin_addr = local_addr(&admin, config.admin.bind);
        tracing::info!(listener = "admin", addr = %admin_addr, "listening");
        let state = crate::admin::State {
            config: config.clone(),
            queue: queue.clone(),
            metrics: metrics.clone(),
            suppressions: suppressions.clone(),
            stats: stats.clone(),
            suspensions: suspensions.clone(),
            token_key: token_key.clone(),
        };
        tracker.spawn(crate::admin::serve(admin, state, shutdown.clone()));

        Ok(Running {
            inbound,
            submission,
            submissions,
            admin: admin_addr,
            queue,
            suppressions,
            suspensions,
            metrics,
            stats,
            events,
            clock,
            warming,
            token_key,
            shutdown,
            tracker,
            grace: config.server.shutdown_timeout.get(),
        })
    }
}

async fn spawn_listener(
    kind: ListenerKind,
    cfg: &Option<ListenerConfig>,
    ctx: &Arc<SessionContext>,
    tracker: &TaskTracker,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(cfg) = cfg else { return Ok(None) };
    let tcp = bind(kind.as_str(), cfg.bind).await?;
    let addr = local_addr(&tcp, cfg.bind);
    tracker.spawn(session::listener::serve(
        kind,
        tcp,
        ctx.clone(),
        tracker.clone(),
    ));
    Ok(Some(addr))
}

async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { name, addr, source })
}

fn local_addr(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

impl Running {
    /// Resolves when shutdown has been requested (by [`Running::trigger_shutdown`]).
    pub async fn cancelled(&self) {
        self.shutdown.cancelled().await
    }

    pub fn trigger_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Graceful stop: stop accepting, let sessions and deliveries finish up to the grace
    /// period, then close the store. Returns false when tasks were still running at the deadline.
    pub async fn shutdown(self) -> bool {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.tracker.close();
        let drained = tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(grace = ?self.grace, "tasks still running at the shutdown deadline");
        }
        self.queue.close();
        self.stats.close();
        self.suppressions.close();
        if let Some(w) = &self.warming {
            w.close();
        }
        tracing::info!(drained, "stopped");
        drained
    }
}
