//! A real `redis-server` (Debian package `redis-server`, installed by `.ci/deps`) for the
//! cluster tests: loopback, an ephemeral port, a temp dir, no persistence (`--save ''`),
//! in the foreground as this process's child, killed by its PID.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl Redis {
    /// Starts a server on a free loopback port and waits until it answers PING.
    pub async fn start() -> Redis {
        // The kernel picks the port; redis-server cannot report one it chose itself.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Redis {
            child: None,
            port,
            dir,
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server, or .ci/deps)");
        self.child = Some(child);
        let client = ::redis::Client::open(self.url()).expect("url");
        super::eventually(10, "redis-server answers PING", || {
            let client = client.clone();
            async move {
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                ::redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .ok()
            }
        })
        .await;
    }

    /// SIGKILL by PID: Redis gone without a goodbye, and its data with it (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill redis-server");
            c.wait().expect("reap redis-server");
        }
    }

    /// A new, empty server on the same port (as after a crash of a Redis without disk).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Stops the server the way a Redis with persistence stops (`SHUTDOWN SAVE`): its data
    /// is on disk for [`Redis::start_again`].
    pub async fn stop_saving(&mut self) {
        let mut conn = self.connection().await;
        // The server closes the connection instead of answering.
        let _ = ::redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query_async::<()>(&mut conn)
            .await;
        if let Some(mut c) = self.child.take() {
            c.wait().expect("reap redis-server");
        }
    }

    /// The server again on the same port, with the data [`Redis::stop_saving`] kept.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// A connection for the test's own look at the data.
    pub async fn connection(&self) -> ::redis::aio::MultiplexedConnection {
        let client = ::redis::Client::open(self.url()).expect("url");
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect in time")
        .expect("connect")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
