//! The real `mxgate` binary as a child process, for crash and signal tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Proc {
    pub child: Child,
    pub inbound: SocketAddr,
    /// The submission listener's address (every test config has one).
    pub submission: SocketAddr,
}

/// Starts `mxgate serve --config FILE` and reads the inbound address from its
/// `listening listener=inbound addr=...` log line.
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
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().expect("lock").push_str(&format!("{line}\n"));
            for name in ["inbound", "submission"] {
                if line.contains("listening") && line.contains(&format!("listener={name} ")) {
                    let addr = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|s| s.parse::<SocketAddr>().ok());
                    let _ = tx.send((name, addr));
                }
            }
        }
    });
    let (mut inbound, mut submission) = (None, None);
    while inbound.is_none() || submission.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(("inbound", a)) => inbound = a,
            Ok((_, a)) => submission = a,
            Err(_) => panic!(
                "server did not log its inbound and submission addresses; its log:\n{}",
                log.lock().expect("lock")
            ),
        }
    }
    let (Some(inbound), Some(submission)) = (inbound, submission) else {
        unreachable!("loop ends when both are set")
    };
    Proc {
        child,
        inbound,
        submission,
    }
}

impl Proc {
    /// Sends SIGTERM (through the `kill` utility: the crate forbids unsafe code).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
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
