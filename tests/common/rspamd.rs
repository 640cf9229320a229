//! A real rspamd (the Debian package's `/usr/bin/rspamd`) for one test: the config of
//! `tests/fixtures/rspamd/` in a temp dir, in the foreground, on a loopback port, stopped by
//! its PID (SIGTERM, then its process group) when the test drops it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

const BIN: &str = "/usr/bin/rspamd";
const PLUGINS: &str = "/usr/share/rspamd/plugins";
const CONF: &str = include_str!("../fixtures/rspamd/rspamd.conf");
const RULES: &str = include_str!("../fixtures/rspamd/mxgate_test.lua");

pub struct Rspamd {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Rspamd {
    /// Started and answering `/ping`. Panics, saying how to install it, without rspamd.
    pub async fn start() -> Rspamd {
        assert!(
            Path::new(BIN).exists(),
            "rspamd is not installed: the spam tests need a real one. Run ./.ci/deps \
             (apt-get install --no-install-recommends rspamd)"
        );
        // rspamd cannot be told to bind port 0 and report it, so a free port is picked and
        // handed over; another process may take it in between (rare): then try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut r = Rspamd::spawn();
            if r.wait_ready().await {
                return r;
            }
            last_log = r.log();
            r.stop();
        }
        panic!("rspamd did not start; its last log:\n{last_log}");
    }

    fn spawn() -> Rspamd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        for sub in ["db", "hs", "plugins"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        for plugin in ["http_headers", "spf", "dmarc", "milter_headers"] {
            let name = format!("{plugin}.lua");
            std::os::unix::fs::symlink(
                Path::new(PLUGINS).join(&name),
                d.join("plugins").join(name),
            )
            .expect("symlink plugin");
        }
        std::fs::write(d.join("tld.dat"), "test\ncom\nnet\norg\nexample\n").expect("tld");
        std::fs::write(d.join("mxgate_test.lua"), RULES).expect("rules");
        let conf = CONF
            .replace("@DIR@", &d.display().to_string())
            .replace("@PORT@", &port.to_string());
        let conf_path = d.join("rspamd.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        use std::os::unix::process::CommandExt;
        let child = Command::new(BIN)
            // -f: foreground, so this is its PID; -i: tests may run as root.
            .args(["-f", "-i", "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("stderr.log")).expect("stderr log"),
            ))
            // Its own process group: its workers can be stopped with it, never others.
            .process_group(0)
            .spawn()
            .expect("spawn rspamd");
        Rspamd {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }

    /// Polls `/ping` until rspamd answers `pong` (true) or exits or 60 s pass (false).
    async fn wait_ready(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().expect("try_wait").is_some()
            {
                return false;
            }
            if ping(self.addr).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// `http://127.0.0.1:PORT`, what `spam.rspamd_url` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        read(self.dir.path().join("rspamd.log")) + &read(self.dir.path().join("stderr.log"))
    }

    /// SIGTERM to the main process, which stops its workers; if it has not exited within
    /// 30 s, SIGKILL to its process group. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = child.wait();
    }
}

/// `GET /ping` answered `pong`; false on any error (not listening yet).
async fn ping(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = "GET /ping HTTP/1.1\r\nHost: rspamd\r\nConnection: close\r\n\r\n";
    let mut buf = Vec::new();
    if s.write_all(req.as_bytes()).await.is_err() || s.read_to_end(&mut buf).await.is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.1 200") && text.trim_end().ends_with("pong")
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        self.stop();
    }
}
