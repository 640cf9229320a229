//! `mxgate serve [--config PATH]`: run until SIGTERM/SIGINT, then shut down gracefully;
//! SIGHUP reads the config file again ([`crate::server::reload`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::server::Server;

pub fn run(arg: &super::ConfigArg) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = arg.load()?;
    // What `check-config` prints as warnings, in the log too: a server started without
    // running it must still say that, e.g., mailed TLS-RPT reports will not go out.
    for (key, message) in config.warnings() {
        tracing::warn!(key, "{message}");
    }
    // Before any thread exists: every thread inherits the policy of the one that spawns it
    // (the runtime's workers, the queue's committer and syncer, RocksDB's background jobs).
    let sched = if config.server.sched_batch {
        match sched_batch() {
            Ok(()) => "batch",
            Err(e) => {
                tracing::warn!(error = %e, "server.sched_batch: SCHED_BATCH refused, normal policy kept");
                "normal"
            }
        }
    } else {
        "normal"
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.workers(cores))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Before the listeners open: a SIGTERM that arrives once clients can connect must
        // be a graceful shutdown, never the default action that kills the process.
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        // Likewise SIGHUP, whose default action would kill the server instead of reloading.
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let running = Server::start(config).await?;
        // Read back from the runtime, so the log says what runs, not what was asked for.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::info!(workers, sched, "mxgate started");
        wait_for_signal(&running, &mut term, &mut hup).await?;
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Serves until SIGTERM, SIGINT or a shutdown; each SIGHUP reloads the config (the
/// outcome is logged by the reload itself).
async fn wait_for_signal(
    running: &crate::server::Running,
    term: &mut Signal,
    hup: &mut Signal,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received");
                return Ok(());
            }
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for SIGINT")?;
                tracing::info!("SIGINT received");
                return Ok(());
            }
            _ = running.cancelled() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the config");
                running.reload().await;
            }
        }
    }
}

/// Puts the calling thread under `SCHED_BATCH` (static priority 0, nice unchanged); see
/// [`ServerConfig::sched_batch`](crate::config::ServerConfig::sched_batch) for why.
fn sched_batch() -> std::io::Result<()> {
    scheduler::set_self_policy(scheduler::Policy::Batch, 0)
        .map_err(|()| std::io::Error::last_os_error())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MXGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
