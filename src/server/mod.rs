//! The only place the stages are wired together: [`Server::start`] opens what lives as
//! long as the server ([`Stable`]: queue, statistics, suppressions, warming counters,
//! metrics), builds what comes from the config ([`Runtime`]: routing, TLS, DKIM, relay, ...)
//! and keeps it in one [`Live`] handle, binds every configured listener, starts the
//! delivery worker, the bounce intake, the events sender and the admin HTTP server, and
//! returns a [`Running`] handle. [`reload`] swaps in a runtime built from the config file
//! read again; listeners and tasks read the runtime through [`View`](crate::live::View)s.
//!
//! Shutdown order (SIGTERM or [`Running::shutdown`]): cancel the token → listeners stop
//! accepting, idle sessions get 421 4.3.2, busy ones finish their reply first; the worker
//! finishes in-flight attempts → wait for all tasks up to `server.shutdown_timeout` →
//! close the stores (the queue commits what is pending) → close the one RocksDB
//! ([`Db::close`]: every family flushed) last.

mod cluster;
pub mod reload;
pub mod runtime;

pub use reload::Reloader;
pub use runtime::{BuildError, Runtime, Stable};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{Config, ListenerConfig};
use crate::db::Db;
use crate::delivery::Worker;
use crate::envelope::ListenerKind;
use crate::intake::Intake;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::routing::token::TokenKey;
use crate::session::{self, SessionContext};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] BuildError),
    #[error("store: {0}")]
    Store(#[from] crate::db::DbError),
    #[error("queue store: {0}")]
    Queue(#[from] crate::queue::StoreError),
    #[error("cannot read or create the VERP token key {path}: {source}")]
    TokenKey {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{0}")]
    Suppressions(#[from] crate::suppression::SuppressError),
    #[error("statistics store: {0}")]
    Stats(#[from] crate::stats::StatsError),
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
    pub suppressions: crate::suppression::SuppressionList,
    /// Sending domains suspended for their bounce rate (the handle as started: its
    /// `[suspension]` settings are those of the start, [`Running::runtime`] has the current).
    pub suspensions: crate::suspension::Suspensions,
    pub metrics: Metrics,
    /// Hourly delivery/bounce statistics (dashboard, `/api/bounces/...`).
    pub stats: crate::stats::Stats,
    /// The ERP events outbox (`[events]` as started).
    pub events: crate::events::Events,
    pub clock: Clock,
    /// Warming counters and provider limiters (whether or not `[warming]` is enabled).
    pub warming: crate::delivery::warming::Warming,
    /// Signs and checks `bounce+TOKEN` VERP tokens.
    pub token_key: TokenKey,
    /// The cluster's Redis (`[cluster] redis_url`); `None` on a single node.
    pub cluster: Option<crate::cluster::Cluster>,
    /// The one RocksDB every store above is a family of; closed last at shutdown.
    pub db: Db,
    reloader: Reloader,
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
        let (mut stable, db) = open_stable(&config, clock)?;
        cluster::join(&config, &mut stable).await?;
        let dns = crate::dns::Dns::from_config(&config.dns).map_err(BuildError::from)?;
        let live = Live::new(Runtime::build(config.clone(), &stable, dns)?);
        let tracker = TaskTracker::new();

        let l = &config.listeners;
        let sessions = live.view(|r| &r.session);
        let inbound =
            spawn_listener(ListenerKind::Inbound, &l.inbound, &sessions, &tracker).await?;
        let submission =
            spawn_listener(ListenerKind::Submission, &l.submission, &sessions, &tracker).await?;
        let submissions = spawn_listener(
            ListenerKind::Submissions,
            &l.submissions,
            &sessions,
            &tracker,
        )
        .await?;

        spawn_background(&live, &stable, &tracker);
        cluster::spawn(&stable, &tracker);
        let admin = bind("admin", config.admin.bind).await?;
        let admin_addr = local_addr(&admin, config.admin.bind);
        tracing::info!(listener = "admin", addr = %admin_addr, "listening");
        let running = Running {
            inbound,
            submission,
            submissions,
            admin: admin_addr,
            queue: stable.queue.clone(),
            suppressions: stable.suppressions.clone(),
            suspensions: stable.suspensions.clone(),
            metrics: stable.metrics.clone(),
            stats: stable.stats.clone(),
            events: stable.events.clone(),
            clock: stable.clock.clone(),
            warming: stable.warming.clone(),
            token_key: stable.token_key.clone(),
            cluster: stable.cluster.clone(),
            db,
            shutdown: stable.shutdown.clone(),
            reloader: Reloader::new(live.clone(), stable),
            tracker,
            grace: config.server.shutdown_timeout.get(),
        };
        let state = admin_state(&running, &live);
        running
            .tracker
            .spawn(crate::admin::serve(admin, state, running.shutdown.clone()));
        Ok(running)
    }
}

/// Opens the database (migrating an older data directory), the stores in it, and makes
/// the handles that live as long as the server.
fn open_stable(config: &Config, clock: Clock) -> Result<(Stable, Db), StartError> {
    let data_dir = &config.server.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let metrics = Metrics::new();
    metrics.declare_config_reloads();
    metrics.declare_dnssec();
    let key_path = data_dir.join("verp.key");
    let token_key = TokenKey::load_or_create(&key_path).map_err(|source| StartError::TokenKey {
        path: key_path.display().to_string(),
        source,
    })?;
    let db = Db::open_data_dir(data_dir, &config.store)?;
    let queue = Queue::in_db(&db, config.queue.clone(), clock.clone(), metrics.clone())?;
    let suppressions = crate::suppression::SuppressionList::in_db(&db, clock.clone())?;
    let stats = crate::stats::Stats::in_db(&db, clock.clone());
    let warming =
        crate::delivery::warming::Warming::in_db(&db, config, clock.clone(), metrics.clone());
    let events = crate::events::Events::new(&config.events, stats.store().clone(), clock.clone())?;
    let suspensions = crate::suspension::Suspensions::open(
        config.suspension.clone(),
        stats.store().clone(),
        clock.clone(),
        metrics.clone(),
        events.clone(),
    )?;
    let oauth2 = crate::delivery::oauth2::Registry::new(clock.clone());
    let stable = Stable {
        clock,
        metrics,
        queue,
        token_key,
        suppressions,
        stats,
        events,
        suspensions,
        warming,
        cluster: None,
        erp_aliases: crate::routing::ErpAliases::open(data_dir),
        oauth2,
        shutdown: CancellationToken::new(),
    };
    Ok((stable, db))
}

/// The delivery worker, the queue's retention purge and disk watch, the events sender, the
/// statistics pruner and the bounce intake.
fn spawn_background(live: &Live<Runtime>, s: &Stable, tracker: &TaskTracker) {
    let config = live.load().config.clone();
    let worker = Worker::new(
        s.queue.clone(),
        live.view(|r| &r.delivery),
        s.metrics.clone(),
        s.clock.clone(),
    );
    tracker.spawn(worker.run(s.shutdown.clone()));
    tracker.spawn(s.queue.clone().run_retention(s.shutdown.clone()));
    tracker.spawn(s.queue.clone().watch_disk(s.shutdown.clone()));
    tracker.spawn(crate::events::Events::run(
        live.view(|r| &r.events),
        s.shutdown.clone(),
    ));
    tracker.spawn(s.stats.clone().run_pruner(
        config.queue.expire_after.get() + crate::stats::SENT_FROM_GRACE,
        s.shutdown.clone(),
    ));
    let intake = Intake::new(
        s.queue.clone(),
        s.token_key.clone(),
        live.view(|r| &r.observer),
        live.view(|r| &r.delivery),
    );
    tracker.spawn(intake.run(s.shutdown.clone()));
    tracker.spawn(crate::delivery::tls_report::Reporter::run(
        live.view(|r| &r.tls_report),
        s.shutdown.clone(),
    ));
    spawn_alias_refresh(&config, s, tracker);
    if config.relay.direct_mx && config.relay.dane {
        // One probe at start, so `mxgate_dnssec_validating` says whether DANE can work
        // before the first MX delivery asks (a wrong trust anchor shows at once).
        let dnssec = live.load().dns.dnssec().clone();
        let shutdown = s.shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = dnssec.validating() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// One task per `odoo` route with `validate_aliases` (the routes of the config at start: a
/// reload does not add or stop these tasks).
fn spawn_alias_refresh(config: &Config, s: &Stable, tracker: &TaskTracker) {
    for (name, route) in &config.routes {
        let crate::config::RouteConfig::Odoo(o) = route else {
            continue;
        };
        if !o.validate_aliases {
            continue;
        }
        let client = crate::http_client::client(&format!("routes.{name}"), &o.trust());
        tracker.spawn(crate::delivery::odoo_aliases::run(
            client,
            name.clone(),
            o.clone(),
            s.erp_aliases.clone(),
            s.shutdown.clone(),
        ));
    }
}

fn admin_state(running: &Running, live: &Live<Runtime>) -> crate::admin::State {
    crate::admin::State {
        config: live.view(|r| &r.config),
        queue: running.queue.clone(),
        metrics: running.metrics.clone(),
        suppressions: running.suppressions.clone(),
        stats: running.stats.clone(),
        suspensions: running.suspensions.clone(),
        token_key: running.token_key.clone(),
        reload: {
            let reloader = running.reloader.clone();
            crate::admin::Reload::new(move || {
                let reloader = reloader.clone();
                async move { reloader.reload().await }
            })
        },
    }
}

async fn spawn_listener(
    kind: ListenerKind,
    cfg: &Option<ListenerConfig>,
    sessions: &crate::live::View<SessionContext>,
    tracker: &TaskTracker,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(cfg) = cfg else { return Ok(None) };
    let tcp = bind(kind.as_str(), cfg.bind).await?;
    let addr = local_addr(&tcp, cfg.bind);
    tracker.spawn(session::listener::serve(
        kind,
        tcp,
        sessions.clone(),
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
    /// Reads the config file the server was started with again and puts it in force
    /// (see [`reload`]); refused as a whole on any problem.
    pub async fn reload(&self) -> crate::admin::ReloadReport {
        self.reloader.reload().await
    }

    /// What the config in force built (its `config`, session and delivery contexts, ...).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.reloader.current()
    }

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
        self.warming.close();
        self.db.close();
        tracing::info!(drained, "stopped");
        drained
    }
}
