//! Live reload: `SIGHUP` to the real binary, `POST /api/reload` and `mxgate reload` read the
//! config file again. New connections get the new config (aliases, TLS certificate) on the
//! same listeners, sessions already open keep theirs, a config with problems is refused
//! whole with every `file:line` while mail keeps flowing, keys that need a restart are
//! named, and `mxgate_config_reloads_total{result}` counts it all.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::process::spawn_server;
use common::{Erp, Listener, SmtpClient, SmtpReply, TestServer, eventually, message};
use mxgate::metrics::CONFIG_RELOADS;

/// One more alias, to the base config's `crm` route.
const NEW_ALIAS: &str = "[[aliases]]\naddress = \"new@example.test\"\nroute = \"crm\"\n";

/// Two problems validation finds (and a good alias, which must not be applied either).
const BROKEN: &str = "[[aliases]]\naddress = \"new@example.test\"\nroute = \"crm\"\n\
    [[aliases]]\naddress = \"lost@example.test\"\nroute = \"nowhere\"\n\
    [[aliases]]\naddress = \"sales@elsewhere.test\"\nroute = \"crm\"\n";

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

/// The reply to RCPT TO:<to> on a fresh inbound connection.
async fn rcpt(addr: SocketAddr, to: &str) -> SmtpReply {
    let mut c = SmtpClient::connect(addr).await;
    c.read_reply().await.expect_code(220);
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    c.cmd(&format!("RCPT TO:<{to}>")).await
}

/// A whole message to `to` on a fresh inbound connection; the final reply.
async fn send(addr: SocketAddr, to: &str, subject: &str) -> SmtpReply {
    let mut c = SmtpClient::connect(addr).await;
    c.read_reply().await.expect_code(220);
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    c.cmd(&format!("RCPT TO:<{to}>")).await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&message(subject, "reload test")).await
}

async fn at_erp(erp: &Erp, subject: &str) {
    let want = format!("Subject: {subject}\r\n");
    eventually(30, &format!("{subject} at the ERP"), || async {
        erp.pushes()
            .iter()
            .any(|p| String::from_utf8_lossy(&p.body).contains(&want))
            .then_some(())
    })
    .await;
}

/// The value of `mxgate_config_reloads_total{result="RESULT"}` in a scrape.
fn reloads(scrape: &str, result: &str) -> Option<u64> {
    common::metrics::sample(scrape, CONFIG_RELOADS, &[("result", result)]).map(|v| v as u64)
}

/// `mxgate reload` against the admin API at `admin`: (exit code, stdout, stderr).
fn cli_reload(admin: &str, config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["reload", "--admin", admin, "--config"])
        .arg(config)
        .output()
        .expect("run mxgate reload");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real binary, its config file and what it routes to.
struct Binary {
    proc: common::process::Proc,
    erp: Erp,
    dir: tempfile::TempDir,
    dns: common::dns::DnsServer,
}

impl Binary {
    async fn start() -> Binary {
        let erp = Erp::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = common::dns::DnsServer::start().await;
        let path = dir.path().join("mxgate.toml");
        std::fs::write(&path, common::file_toml(dir.path(), &erp.url(), &dns, "")).expect("write");
        let proc = spawn_server(&path);
        Binary {
            proc,
            erp,
            dir,
            dns,
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("mxgate.toml")
    }

    /// Writes the base config plus `extra` (after `edit`); returns the text.
    fn write(&self, extra: &str, edit: impl Fn(String) -> String) -> String {
        let text = edit(common::file_toml(
            self.dir.path(),
            &self.erp.url(),
            &self.dns,
            extra,
        ));
        std::fs::write(self.path(), &text).expect("write config");
        text
    }

    async fn scrape(&self) -> String {
        common::erp::http_get(&format!("{}/metrics", self.proc.admin_url()))
            .await
            .1
    }

    async fn wait_reloads(&self, result: &str, n: u64) {
        eventually(
            30,
            &format!("{n} reload(s) counted as {result}"),
            || async { (reloads(&self.scrape().await, result) == Some(n)).then_some(()) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_an_alias_that_takes_mail_without_a_restart() {
    let b = Binary::start().await;
    let inbound = b.proc.inbound;
    rcpt(inbound, "new@example.test").await.expect(550, "5.1.1");
    assert_eq!(
        reloads(&b.scrape().await, "ok"),
        Some(0),
        "declared at start"
    );

    b.write(NEW_ALIAS, |t| t);
    b.proc.sighup();
    b.wait_reloads("ok", 1).await;

    // Same listener, same port: the new alias takes mail, and the old ones still do.
    send(inbound, "new@example.test", "after-sighup")
        .await
        .expect_code(250);
    send(inbound, "sales@example.test", "old-alias-still-there")
        .await
        .expect_code(250);
    at_erp(&b.erp, "after-sighup").await;
    at_erp(&b.erp, "old-alias-still-there").await;
    assert!(b.proc.log().contains("config reloaded"), "{}", b.proc.log());

    let mut proc = b.proc;
    proc.sigterm();
    assert_eq!(proc.wait_exit(30), Some(0), "graceful exit after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_whole_with_every_problem_while_mail_keeps_flowing() {
    let b = Binary::start().await;
    let inbound = b.proc.inbound;
    let text = b.write(BROKEN, |t| t);
    let path = b.path().display().to_string();
    let wanted = [
        format!("{path}:{}: ", line_of(&text, "route = \"nowhere\"")),
        format!("{path}:{}: ", line_of(&text, "sales@elsewhere.test")),
    ];

    // The API: 422 with every problem at its line.
    let (status, body) =
        common::erp::http_request("POST", &format!("{}/api/reload", b.proc.admin_url()), "").await;
    assert_eq!(status, 422, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    assert_eq!(report["applied"], false, "{body}");
    let problems: Vec<String> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect();
    for w in &wanted {
        assert!(
            problems.iter().any(|p| p.starts_with(w)),
            "{w} not in {problems:?}"
        );
    }

    // The CLI: the same problems, exit 1.
    let (code, stdout, stderr) = cli_reload(&b.proc.admin_url(), &b.path());
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    for p in &problems {
        assert!(stderr.contains(p.as_str()), "{p} not in {stderr}");
    }
    assert!(stdout.contains("applied: no"), "{stdout}");

    // SIGHUP: refused too, every problem in the log.
    b.proc.sighup();
    b.wait_reloads("error", 3).await;
    let log = b.proc.log();
    for p in &problems {
        assert!(log.contains(p.as_str()), "{p} not logged:\n{log}");
    }

    // Nothing of it applied (not even its good alias); the old config takes mail.
    rcpt(inbound, "new@example.test").await.expect(550, "5.1.1");
    send(inbound, "sales@example.test", "during-broken-config")
        .await
        .expect_code(250);
    at_erp(&b.erp, "during-broken-config").await;
    assert_eq!(reloads(&b.scrape().await, "ok"), Some(0));

    // Fixed, with a listener moved: applied, the move named as needing a restart.
    b.write(NEW_ALIAS, |t| {
        t.replacen(
            "[listeners.inbound]\nbind = \"127.0.0.1:0\"",
            "[listeners.inbound]\nbind = \"127.0.0.2:0\"",
            1,
        )
    });
    let (code, stdout, stderr) = cli_reload(&b.proc.admin_url(), &b.path());
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("applied: yes"), "{stdout}");
    assert!(
        stdout.contains("restart needed for: listeners.inbound"),
        "{stdout}"
    );
    send(inbound, "new@example.test", "after-fix")
        .await
        .expect_code(250);
    at_erp(&b.erp, "after-fix").await;
    b.wait_reloads("ok", 1).await;
}

#[tokio::test]
async fn a_session_opened_before_a_reload_keeps_its_old_view() {
    let srv = TestServer::start_from_file("").await;
    let mut before = srv.smtp(Listener::Inbound).await;
    before.cmd("EHLO client.test").await.expect_code(250);
    before
        .cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);

    // new@ added, support@ gone.
    let text = srv.write_config(NEW_ALIAS);
    let text = text.replacen(
        "[[aliases]]\naddress = \"support@example.test\"\nroute = \"crm\"\n",
        "",
        1,
    );
    srv.write_config_text(&text);
    let (status, body) = admin_post(&srv, "/api/reload").await;
    assert_eq!(status, 200, "{body}");

    // The old session: old aliases, to the end of its transaction.
    before
        .cmd("RCPT TO:<new@example.test>")
        .await
        .expect(550, "5.1.1");
    before
        .cmd("RCPT TO:<support@example.test>")
        .await
        .expect_code(250);
    before.cmd("DATA").await.expect_code(354);
    before
        .send_data(&message("old-view", "accepted on the old config"))
        .await
        .expect_code(250);
    at_erp(&srv.erp, "old-view").await;

    // A new session: the new aliases.
    rcpt(srv.addr(Listener::Inbound), "new@example.test")
        .await
        .expect_code(250);
    rcpt(srv.addr(Listener::Inbound), "support@example.test")
        .await
        .expect(550, "5.1.1");
    srv.shutdown().await;
}

/// The certificate a STARTTLS handshake on `addr` presents.
async fn starttls_cert(addr: SocketAddr) -> Vec<u8> {
    let mut c = SmtpClient::connect(addr).await;
    c.read_reply().await.expect_code(220);
    c.cmd("EHLO client.test").await.expect_code(250);
    c.cmd("STARTTLS").await.expect_code(220);
    let c = c.upgrade_tls().await;
    c.peer_certificate().expect("a certificate").to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_by_the_next_handshakes_only_after_a_good_reload() {
    let srv = TestServer::start_from_file("").await;
    let inbound = srv.addr(Listener::Inbound);
    let old = starttls_cert(inbound).await;
    let (cert, key) = (srv.config.tls.cert.clone(), srv.config.tls.key.clone());
    // A session greeted before the renewal keeps the certificate it started with.
    let mut before = SmtpClient::connect(inbound).await;
    before.read_reply().await.expect_code(220);
    before.cmd("EHLO client.test").await.expect_code(250);

    // A half-written renewal (a key that is no key) is refused at the key's line and the
    // running certificate stays.
    std::fs::write(&key, "not a key").expect("write key");
    let (status, body) = admin_post(&srv, "/api/reload").await;
    assert_eq!(status, 422, "{body}");
    let text = std::fs::read_to_string(srv.config_path()).expect("config");
    let at = format!(
        "{}:{}: tls.key: ",
        srv.config_path().display(),
        line_of(&text, "key = ")
    );
    assert!(body.contains(&at), "{at} not in {body}");
    assert_eq!(starttls_cert(inbound).await, old);

    let renewed = rcgen::generate_simple_self_signed(vec!["mx.example.test".to_string()])
        .expect("generate a certificate");
    std::fs::write(&cert, renewed.cert.pem()).expect("write cert");
    std::fs::write(&key, renewed.signing_key.serialize_pem()).expect("write key");
    let (status, body) = admin_post(&srv, "/api/reload").await;
    assert_eq!(status, 200, "{body}");

    let new = renewed.cert.der().to_vec();
    assert_ne!(new, old);
    assert_eq!(starttls_cert(inbound).await, new, "STARTTLS on 25");
    assert_eq!(
        starttls_cert(srv.addr(Listener::Submission)).await,
        new,
        "STARTTLS on 587"
    );
    let implicit = SmtpClient::connect_tls(srv.addr(Listener::Submissions)).await;
    assert_eq!(
        implicit.peer_certificate(),
        Some(new.as_slice()),
        "implicit TLS on 465"
    );
    before.cmd("STARTTLS").await.expect_code(220);
    let before = before.upgrade_tls().await;
    assert_eq!(before.peer_certificate(), Some(old.as_slice()));

    let scrape = srv.admin_get("/metrics").await.1;
    assert_eq!(reloads(&scrape, "ok"), Some(1), "{scrape}");
    assert_eq!(reloads(&scrape, "error"), Some(1), "{scrape}");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_server_started_without_a_config_file_refuses_to_reload() {
    let srv = TestServer::start("").await;
    let (status, body) = admin_post(&srv, "/api/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("without a config file"), "{body}");
    srv.shutdown().await;
}

async fn admin_post(srv: &TestServer, path: &str) -> (u16, String) {
    common::erp::http_request("POST", &format!("{}{path}", srv.admin_url()), "").await
}

/// `server.worker_threads` sizes the async runtime (read back from the runtime into the
/// start line), 0 means every core but one, and a reload names it as needing a restart.
#[tokio::test]
async fn worker_threads_size_the_runtime_and_need_a_restart() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (setting, want) in [("", cores.saturating_sub(1).max(1)), ("3", 3)] {
        let erp = Erp::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = common::dns::DnsServer::start().await;
        let path = dir.path().join("mxgate.toml");
        let config = |n: &str| {
            let text = common::file_toml(dir.path(), &erp.url(), &dns, "");
            if n.is_empty() {
                return text;
            }
            with_server_key(&text, &format!("worker_threads = {n}"))
        };
        std::fs::write(&path, config(setting)).expect("write config");
        let proc = spawn_server(&path);
        let started = start_line(&proc).await;
        assert!(
            started.contains(&format!("workers={want}")),
            "worker_threads = {setting:?} on {cores} cores: {started}"
        );
        // The runtime so sized serves mail end to end.
        send(
            proc.inbound,
            "sales@example.test",
            &format!("workers-{want}"),
        )
        .await
        .expect_code(250);
        at_erp(&erp, &format!("workers-{want}")).await;

        std::fs::write(&path, config("2")).expect("write config");
        let (code, stdout, stderr) = cli_reload(&proc.admin_url(), &path);
        assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
        assert!(
            stdout.contains("restart needed for: server.worker_threads"),
            "{stdout}"
        );
    }
}

/// `server.sched_batch` (on by default) puts every thread of the server under Linux's
/// SCHED_BATCH, the runtime's workers, the queue's committer and syncer and RocksDB's
/// threads included (all spawned after it is set); off leaves them all SCHED_OTHER. Mail
/// flows either way, and a reload names the key as needing a restart.
#[tokio::test]
async fn sched_batch_covers_every_thread_and_needs_a_restart() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (setting, want, word) in [
        (None, SCHED_BATCH, "batch"),
        (Some(false), SCHED_OTHER, "normal"),
    ] {
        let erp = Erp::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dns = common::dns::DnsServer::start().await;
        let path = dir.path().join("mxgate.toml");
        let config = |v: Option<bool>| {
            let text = common::file_toml(dir.path(), &erp.url(), &dns, "");
            match v {
                None => text,
                Some(v) => with_server_key(&text, &format!("sched_batch = {v}")),
            }
        };
        std::fs::write(&path, config(setting)).expect("write config");
        let proc = spawn_server(&path);
        let started = start_line(&proc).await;
        assert!(
            started.contains(&format!("sched=\"{word}\"")),
            "sched_batch = {setting:?}: {started}"
        );
        // A message end to end first, so that every kind of thread has been started.
        send(proc.inbound, "sales@example.test", &format!("sched-{word}"))
            .await
            .expect_code(250);
        at_erp(&erp, &format!("sched-{word}")).await;

        let pid = proc.child.id();
        let policies = thread_policies(pid);
        assert!(policies.len() >= 4, "threads of {pid}: {policies:?}");
        for (name, policy) in &policies {
            assert_eq!(
                *policy, want,
                "thread {name} of the server, sched_batch = {setting:?}: {policies:?}"
            );
        }

        std::fs::write(&path, config(Some(setting.is_some()))).expect("write config");
        let (code, stdout, stderr) = cli_reload(&proc.admin_url(), &path);
        assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
        assert!(
            stdout.contains("restart needed for: server.sched_batch"),
            "{stdout}"
        );
    }
}

/// `text` (a `common::file_toml` config) with `key` added to its `[server]` table.
fn with_server_key(text: &str, key: &str) -> String {
    let anchor = "shutdown_timeout = \"5s\"\n";
    assert!(
        text.contains(anchor),
        "no [server] shutdown_timeout line in:\n{text}"
    );
    text.replacen(anchor, &format!("{anchor}{key}\n"), 1)
}

/// The server's `mxgate started` log line, once it is written.
async fn start_line(proc: &common::process::Proc) -> String {
    eventually(30, "the start line", || async {
        proc.log()
            .lines()
            .find(|l| l.contains("mxgate started"))
            .map(str::to_owned)
    })
    .await
}

/// Each thread of process `pid`: its name and scheduling policy (field 41 of
/// `/proc/PID/task/TID/stat`).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    let mut out = Vec::new();
    for task in tasks {
        let stat = std::fs::read_to_string(task.expect("task").path().join("stat"))
            .expect("stat of a thread");
        // "TID (comm) state ..." where comm may hold spaces: fields after the last ')'.
        let (head, rest) = stat.rsplit_once(')').expect("comm in parentheses");
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        // rest starts at field 3 (state); policy is field 41.
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .expect("policy field");
        out.push((name, policy));
    }
    out
}
