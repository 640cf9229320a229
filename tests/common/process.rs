//! The real `mxgate` binary as a child process, for crash and signal tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proc {
    pub child: Child,
    pub inbound: SocketAddr,
    /// The submission listener's address (every test config has one).
    pub submission: SocketAddr,
    /// Every `listening` line's address so far, by listener name (`inbound`, ..., `admin`).
    listening: Arc<Mutex<HashMap<String, SocketAddr>>>,
    /// Everything the server logged so far.
    log: Arc<Mutex<String>>,
}

/// Starts `mxgate serve --config FILE` and reads the listeners' addresses from its
/// `listening listener=NAME addr=...` log lines (waiting for inbound, submission and admin).
pub fn spawn_server(config: &std::path::Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["serve", "--config"])
        .arg(config)
        .env("MXGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mxgate");
    let stderr = child.stderr.take().expect("stderr piped");
    let log = Arc::new(Mutex::new(String::new()));
    let addrs = Arc::new(Mutex::new(HashMap::new()));
    let (log2, addrs2) = (log.clone(), addrs.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().expect("lock").push_str(&format!("{line}\n"));
            if let Some((name, addr)) = listening(&line) {
                addrs2.lock().expect("lock").insert(name, addr);
            }
        }
    });
    let mut proc = Proc {
        child,
        inbound: SocketAddr::from(([0, 0, 0, 0], 0)),
        submission: SocketAddr::from(([0, 0, 0, 0], 0)),
        listening: addrs,
        log,
    };
    proc.inbound = proc.addr("inbound");
    proc.submission = proc.addr("submission");
    proc
}

/// (listener, addr) of a `listening` log line; the name may be quoted (`listener="admin"`).
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    if !line.contains("listening") {
        return None;
    }
    let field = |key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(|s| s.trim_matches('"').to_string())
    };
    let name = field("listener=")?;
    let addr = field("addr=")?.parse().ok()?;
    Some((name, addr))
}

impl Proc {
    /// Sends SIGTERM (through the `kill` utility: the crate forbids unsafe code).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGHUP: the server reads its config file again.
    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The address listener `name` logged, waiting up to 60 s for its `listening` line.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(a) = self.listening.lock().expect("lock").get(name) {
                return *a;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not log a {name} address; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.addr("admin"))
    }

    /// Waits up to `secs` for exit; returns the exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
