//! "A 250 means fsync'd": run the real binary, SIGKILL it while clients are sending,
//! restart it on the same data dir, and check that every message that got a 250 reaches
//! the ERP (at least once).

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::process::spawn_server;
use common::{Erp, SmtpClient, eventually};

/// One SMTP transaction per message on a persistent connection; returns the ids that got 250.
async fn sender(
    addr: SocketAddr,
    worker: usize,
    body: Arc<String>,
    accepted: Arc<Mutex<HashSet<String>>>,
) {
    let mut c = SmtpClient::connect(addr).await;
    let Some(r) = c.try_read_reply().await else {
        return;
    };
    if r.code != 220 {
        return;
    }
    if c.try_cmd("EHLO load.test").await.map(|r| r.code) != Some(250) {
        return;
    }
    for i in 0.. {
        let id = format!("w{worker}-m{i}");
        let body = common::message(&id, &body);
        let steps = [
            format!("MAIL FROM:<load{worker}@client.test>"),
            "RCPT TO:<sales@example.test>".into(),
        ];
        for s in &steps {
            if c.try_cmd(s).await.map(|r| r.code) != Some(250) {
                return;
            }
        }
        if c.try_cmd("DATA").await.map(|r| r.code) != Some(354) {
            return;
        }
        match c.try_send_data(&body).await {
            Some(r) if r.code == 250 => {
                accepted.lock().expect("lock").insert(id);
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_that_got_250_survives_sigkill() {
    sigkill_under_load("", "durable please", 200, |_| true).await;
}

/// The same with the WAL files recycled (`recycle_log_file_num`): the smallest store budget
/// rolls the WAL every 16 MiB, so 64 KiB messages put the kill in a reused WAL file, whose
/// stale tail from its previous use recovery must tell from the new records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_that_got_250_survives_sigkill_in_a_recycled_wal() {
    let line = format!("{}\r\n", "w".repeat(998));
    let body = line.repeat(64);
    sigkill_under_load("[store]\ncache_bytes = \"16MiB\"\n", &body, 600, |data| {
        std::fs::read_to_string(data.join("db/LOG")).is_ok_and(|log| log.contains("reusing log"))
    })
    .await;
}

/// Eight clients send `body` until at least `min` messages got 250 and `ready` holds for the
/// data dir, then SIGKILL; the restarted server must deliver every one of them.
async fn sigkill_under_load(
    extra: &str,
    body: &str,
    min: usize,
    ready: impl Fn(&std::path::Path) -> bool,
) {
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("mxgate.toml");
    // Our own DNS server: the verdicts must not depend on the machine's resolver.
    let dns = common::dns::DnsServer::start().await;
    std::fs::write(
        &config_path,
        common::base_toml(
            dir.path(),
            &erp.url(),
            &format!("{}{extra}", dns.config_toml()),
        ),
    )
    .expect("write config");

    let mut proc = spawn_server(&config_path);
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let body = Arc::new(body.to_string());
    let senders: Vec<_> = (0..8)
        .map(|w| tokio::spawn(sender(proc.inbound, w, body.clone(), accepted.clone())))
        .collect();
    // Kill mid-load: once a good number of messages have been acknowledged.
    let data = dir.path().join("data");
    eventually(120, &format!("{min} messages accepted"), || async {
        (accepted.lock().expect("lock").len() >= min && ready(&data)).then_some(())
    })
    .await;
    proc.child.kill().expect("SIGKILL mxgate");
    proc.child.wait().expect("reap");
    for s in senders {
        let _ = s.await;
    }
    let acked = accepted.lock().expect("lock").clone();
    assert!(acked.len() >= min);

    let mut proc2 = spawn_server(&config_path);
    let missing = eventually(120, "every 250'd message at the ERP", || async {
        let got: HashSet<String> = erp
            .pushes()
            .iter()
            .filter_map(|p| subject(&p.body))
            .collect();
        let missing: Vec<_> = acked
            .iter()
            .filter(|id| !got.contains(*id))
            .cloned()
            .collect();
        missing.is_empty().then_some(missing)
    })
    .await;
    assert!(missing.is_empty());
    proc2.sigterm();
    assert_eq!(proc2.wait_exit(30), Some(0), "graceful exit after SIGTERM");
}

fn subject(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .map(|s| s.trim().to_string())
}
