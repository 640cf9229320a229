//! Live reload (`SIGHUP`, `POST /api/reload`, `mxgate reload`): read the config file the
//! server was started with again, and put it in force without closing a listener.
//!
//! All or nothing: the file is parsed and validated, then a whole new [`Runtime`] is built
//! (which loads the TLS certificate and DKIM keys); any problem refuses the reload with
//! every `file:line` problem logged and returned, and the running config stays. Otherwise
//! the new runtime replaces the old one in one swap: sessions already open and attempts
//! already running finish on the runtime they took, the next connection and the next
//! attempt get the new one (routing, aliases, submission users, smart hosts, warming,
//! streams, suspension, events, TLS certificate, SMTP limits, sender checks, DKIM).
//!
//! Keys read once at start — listener binds, `admin.bind`, `server.data_dir`,
//! `server.shutdown_timeout`, `[queue]`, `[store]` — are not refused: their change is
//! reported as "restart needed", the running value is kept in the new config (so the config
//! in force says what really runs), and the rest is applied.

use std::sync::Arc;

use super::runtime::{Runtime, Stable};
use crate::admin::ReloadReport;
use crate::config::{Config, ConfigError};
use crate::live::Live;

/// Re-reads and applies the config; cheap to clone. One reload runs at a time.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    live: Live<Runtime>,
    stable: Stable,
    /// Serializes reloads (a SIGHUP during an API reload waits for it).
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(live: Live<Runtime>, stable: Stable) -> Reloader {
        Reloader {
            inner: Arc::new(Inner {
                live,
                stable,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The config-derived parts in force now.
    pub fn current(&self) -> Arc<Runtime> {
        self.inner.live.load()
    }

    /// Reloads, logs the outcome and counts it in `mxgate_config_reloads_total{result}`.
    pub async fn reload(&self) -> ReloadReport {
        let _one_at_a_time = self.inner.running.lock().await;
        let file = self.current().config.source.clone();
        let inner = self.inner.clone();
        let built = match &file {
            Some(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || inner.prepare(&path))
                    .await
                    .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]))
            }
            None => Err(vec![
                "the server was started without a config file (the embedded default): \
                 there is nothing to read again; start it with --config FILE"
                    .to_string(),
            ]),
        };
        let file = file.map(|f| f.display().to_string());
        let report = match built {
            Ok((runtime, restart_needed)) => {
                let events = runtime.events.clone();
                self.inner.live.store(runtime);
                // The events sender may be idle on the old `url`: let it look again.
                events.wake();
                applied(file, restart_needed)
            }
            Err(problems) => refused(file, problems),
        };
        self.inner.stable.metrics.config_reload(report.applied);
        report
    }
}

impl Inner {
    /// The new runtime and the restart-only keys that changed, or every problem.
    fn prepare(&self, path: &std::path::Path) -> Result<(Runtime, Vec<&'static str>), Vec<String>> {
        let mut config = Config::load(path).map_err(|e| e.lines())?;
        let current = self.live.load();
        let restart_needed = keep_restart_keys(&current.config, &mut config);
        let dns = if config.dns == current.config.dns {
            current.dns.clone()
        } else {
            crate::dns::Dns::from_config(&config.dns)
                .map_err(|e| ConfigError::at_key(path, "dns.nameservers", e.to_string()).lines())?
        };
        Runtime::build(Arc::new(config), &self.stable, dns)
            .map(|runtime| (runtime, restart_needed))
            .map_err(|e| ConfigError::at_key(path, e.key(), e.to_string()).lines())
    }
}

fn applied(file: Option<String>, restart_needed: Vec<&'static str>) -> ReloadReport {
    let message = if restart_needed.is_empty() {
        "config reloaded".to_string()
    } else {
        format!(
            "config reloaded; restart needed for: {}",
            restart_needed.join(", ")
        )
    };
    tracing::info!(
        file = file.as_deref().unwrap_or(""),
        ?restart_needed,
        "{message}"
    );
    ReloadReport {
        result: "ok",
        file,
        applied: true,
        restart_needed,
        problems: Vec::new(),
        message,
    }
}

fn refused(file: Option<String>, problems: Vec<String>) -> ReloadReport {
    for p in &problems {
        tracing::warn!(problem = %p, "config reload refused");
    }
    let message = format!(
        "config refused ({} problem{}); the running config stays",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    tracing::warn!(file = file.as_deref().unwrap_or(""), "{message}");
    ReloadReport {
        result: "error",
        file,
        applied: false,
        restart_needed: Vec::new(),
        problems,
        message,
    }
}

/// Puts the running value of every key read only at start back into `new` (sockets are
/// bound, stores opened and tasks sized with it), and names those whose value changed.
pub fn keep_restart_keys(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut keep = KeepRunning(&mut changed);
    keep.key(
        "listeners.inbound",
        &old.listeners.inbound,
        &mut new.listeners.inbound,
    );
    keep.key(
        "listeners.submission",
        &old.listeners.submission,
        &mut new.listeners.submission,
    );
    keep.key(
        "listeners.submissions",
        &old.listeners.submissions,
        &mut new.listeners.submissions,
    );
    keep.key("admin.bind", &old.admin.bind, &mut new.admin.bind);
    keep.key(
        "server.data_dir",
        &old.server.data_dir,
        &mut new.server.data_dir,
    );
    keep.key(
        "server.shutdown_timeout",
        &old.server.shutdown_timeout,
        &mut new.server.shutdown_timeout,
    );
    keep.key(
        "server.worker_threads",
        &old.server.worker_threads,
        &mut new.server.worker_threads,
    );
    keep.key(
        "server.sched_batch",
        &old.server.sched_batch,
        &mut new.server.sched_batch,
    );
    keep.key("queue", &old.queue, &mut new.queue);
    keep.key("store", &old.store, &mut new.store);
    changed
}

struct KeepRunning<'a>(&'a mut Vec<&'static str>);

impl KeepRunning<'_> {
    fn key<T: PartialEq + Clone>(&mut self, name: &'static str, old: &T, new: &mut T) {
        if old != new {
            self.0.push(name);
            *new = old.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn restart_only_keys_keep_their_running_value_and_are_named() {
        let old = config(
            "[server]\ndata_dir = \"a\"\n[listeners.inbound]\nbind = \"127.0.0.1:2525\"\n\
             [queue]\nconcurrency = 4\n",
        );
        let mut new = config(
            "[server]\ndata_dir = \"b\"\n[listeners.inbound]\nbind = \"127.0.0.1:25\"\n\
             [queue]\nconcurrency = 8\n[smtp]\nmax_errors = 3\n",
        );
        let changed = keep_restart_keys(&old, &mut new);
        assert_eq!(changed, ["listeners.inbound", "server.data_dir", "queue"]);
        assert_eq!(new.server.data_dir, Path::new("a"));
        assert_eq!(new.queue.concurrency, 4);
        assert_eq!(
            new.listeners.inbound.as_ref().map(|l| l.bind.port()),
            Some(2525)
        );
        assert_eq!(
            new.smtp.max_errors, 3,
            "reloadable keys are taken from the file"
        );
        let mut same = old.clone();
        assert!(keep_restart_keys(&old, &mut same).is_empty());
    }
}
