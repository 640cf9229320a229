//! Shared integration-test harness: a real [`Server`] on ephemeral loopback ports with a
//! temp data dir, a real HTTP receiver standing in for the ERP, and a raw SMTP client.
#![allow(dead_code)]

pub mod browser;
pub mod dns;
pub mod erp;
pub mod fake_odoo;
pub mod messages;
pub mod metrics;
pub mod policy_host;
pub mod process;
pub mod redis;
pub mod rspamd;
pub mod sink;
pub mod smtp;
pub mod submit;
pub mod test_ca;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mxgate::config::Config;
use mxgate::server::{Running, Server};
use tempfile::TempDir;

pub use erp::Erp;
pub use smtp::{SmtpClient, SmtpReply};

/// Which listener a client connects to.
#[derive(Clone, Copy, Debug)]
pub enum Listener {
    Inbound,
    Submission,
    Submissions,
}

pub struct TestServer {
    pub running: Option<Running>,
    pub dir: TempDir,
    pub erp: Erp,
    pub config: Config,
    /// The authoritative DNS server the server's resolver asks (unless the test's TOML
    /// names other `[dns] nameservers`); records can be added while the server runs.
    pub dns: dns::DnsServer,
}

/// Base config: alias domain `example.test`, aliases sales@ and support@ to the ERP over
/// HTTP, `reply+` to the same ERP route, maildir catchall off, every port ephemeral, fast
/// retries so tests do not wait. `extra` is appended (new tables only).
pub fn base_toml(dir: &Path, erp_url: &str, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"
[server]
hostname = "mx.example.test"
data_dir = "{d}/data"
shutdown_timeout = "5s"
[listeners.inbound]
bind = "127.0.0.1:0"
[listeners.submission]
bind = "127.0.0.1:0"
[listeners.submissions]
bind = "127.0.0.1:0"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "{d}/certs/mx.crt"
key = "{d}/certs/mx.key"
[queue]
retry_initial = "100ms"
retry_max = "500ms"
expire_after = "1h"
concurrency = 8
[[domains]]
name = "example.test"
reply_route = "threads"
[[aliases]]
address = "sales@example.test"
route = "crm"
[[aliases]]
address = "support@example.test"
route = "crm"
[[aliases]]
address = "old@example.test"
route = "closed"
[[aliases]]
address = "files@example.test"
route = "files"
[[aliases]]
address = "null@example.test"
route = "void"
[routes.crm]
kind = "http"
url = "{erp_url}/mxgate/inbound"
timeout = "2s"
[routes.threads]
kind = "http"
url = "{erp_url}/mxgate/threads"
timeout = "2s"
[routes.closed]
kind = "reject"
message = "This address no longer accepts mail"
[routes.files]
kind = "maildir"
path = "{d}/maildir"
[routes.void]
kind = "discard"
{extra}
"#
    )
}

impl TestServer {
    /// Starts a server with the base config plus `extra` TOML.
    pub async fn start(extra: &str) -> TestServer {
        let erp = Erp::start().await;
        Self::start_with_erp(erp, extra).await
    }

    /// Starts a server whose ERP is `erp` (possibly not listening yet).
    pub async fn start_with_erp(erp: Erp, extra: &str) -> TestServer {
        Self::start_configured(erp, extra, |_| {}).await
    }

    /// As `start_with_erp`, with a last change to the loaded config.
    pub async fn start_configured(
        erp: Erp,
        extra: &str,
        change: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = base_toml(dir.path(), &erp.url(), extra);
        let mut config =
            Config::from_toml(&toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
        // Sender authentication asks DNS for every inbound message: never the machine's
        // resolver, an in-process one whose (initially empty) zone the test controls.
        let dns = dns::DnsServer::start().await;
        if config.dns.nameservers.is_empty() {
            config.dns.nameservers = vec![dns.addr];
        }
        change(&mut config);
        let running = Server::start(config.clone())
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        TestServer {
            running: Some(running),
            dir,
            erp,
            config,
            dns,
        }
    }

    /// Starts a server from a config *file* — the base config, the test's DNS server and
    /// `extra` — so that it can reload: [`TestServer::write_config`] changes that file.
    pub async fn start_from_file(extra: &str) -> TestServer {
        let erp = Erp::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = dns::DnsServer::start().await;
        let path = config_file(dir.path());
        std::fs::write(&path, file_toml(dir.path(), &erp.url(), &dns, extra)).expect("write");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let running = Server::start(config.clone())
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        TestServer {
            running: Some(running),
            dir,
            erp,
            config,
            dns,
        }
    }

    /// Replaces the config file of a [`TestServer::start_from_file`] server (base config,
    /// DNS server, `extra`); returns its text. The server reads it at its next reload.
    pub fn write_config(&self, extra: &str) -> String {
        let text = file_toml(self.dir.path(), &self.erp.url(), &self.dns, extra);
        self.write_config_text(&text);
        text
    }

    /// Replaces the config file with `text` as is.
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(config_file(self.dir.path()), text).expect("write config");
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        config_file(self.dir.path())
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    pub fn addr(&self, l: Listener) -> SocketAddr {
        let r = self.running();
        match l {
            Listener::Inbound => r.inbound,
            Listener::Submission => r.submission,
            Listener::Submissions => r.submissions,
        }
        .expect("listener configured")
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.running().admin)
    }

    /// A connected client that has read the greeting (plain TCP; implicit TLS for 465).
    pub async fn smtp(&self, l: Listener) -> SmtpClient {
        let addr = self.addr(l);
        let mut c = match l {
            Listener::Submissions => SmtpClient::connect_tls(addr).await,
            _ => SmtpClient::connect(addr).await,
        };
        c.read_reply().await.expect_code(220);
        c
    }

    /// Restarts on the same data dir (graceful stop first).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let running = Server::start(self.config.clone())
            .await
            .unwrap_or_else(|e| panic!("restart: {e}"));
        self.running = Some(running);
    }

    /// Graceful shutdown, asserted to drain in time.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            assert!(
                r.shutdown().await,
                "server did not drain before its deadline"
            );
        }
    }

    /// GET on the admin port; returns (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        erp::http_get(&format!("{}{path}", self.admin_url())).await
    }

    /// `name`'s value for `labels` ([`metrics::sample`]) as `GET /metrics` shows it now.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (status, scrape) = self.admin_get("/metrics").await;
        assert_eq!(status, 200, "{scrape}");
        metrics::sample(&scrape, name, labels)
    }

    /// Sends one message through the inbound listener and returns the final reply.
    pub async fn send_inbound(&self, from: &str, to: &[&str], body: &str) -> SmtpReply {
        let mut c = self.smtp(Listener::Inbound).await;
        c.cmd("EHLO client.test").await.expect_code(250);
        c.cmd(&format!("MAIL FROM:<{from}>")).await.expect_code(250);
        for t in to {
            c.cmd(&format!("RCPT TO:<{t}>")).await.expect_code(250);
        }
        c.cmd("DATA").await.expect_code(354);
        c.send_data(body).await
    }
}

fn config_file(dir: &Path) -> std::path::PathBuf {
    dir.join("mxgate.toml")
}

/// The base config with `dns`'s `[dns]` table and `extra` (new tables only).
pub fn file_toml(dir: &Path, erp_url: &str, dns: &dns::DnsServer, extra: &str) -> String {
    base_toml(dir, erp_url, &format!("{}{extra}", dns.config_toml()))
}

/// Polls `f` every 20 ms until it returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small RFC 5322 message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@client.test>\r\nTo: sales@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\n{body}\r\n"
    )
}

/// `promtool check metrics` accepts `scrape` (skipped, with a line saying so, where promtool
/// is not installed).
pub fn promtool_check_metrics(scrape: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!(
            "SKIPPED: promtool is not installed (apt-get install prometheus); scrape not checked"
        );
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write scrape");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
