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
async fn sender(addr: SocketAddr, worker: usize, accepted: Arc<Mutex<HashSet<String>>>) {
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
        let body = common::message(&id, "durable please");
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
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("mxgate.toml");
    // Our own DNS server: the verdicts must not depend on the machine's resolver.
    let dns = common::dns::DnsServer::start().await;
    std::fs::write(
        &config_path,
        common::base_toml(dir.path(), &erp.url(), &dns.config_toml()),
    )
    .expect("write config");

    let mut proc = spawn_server(&config_path);
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let senders: Vec<_> = (0..8)
        .map(|w| tokio::spawn(sender(proc.inbound, w, accepted.clone())))
        .collect();
    // Kill mid-load: once a good number of messages have been acknowledged.
    eventually(60, "200 messages accepted", || async {
        (accepted.lock().expect("lock").len() >= 200).then_some(())
    })
    .await;
    proc.child.kill().expect("SIGKILL mxgate");
    proc.child.wait().expect("reap");
    for s in senders {
        let _ = s.await;
    }
    let acked = accepted.lock().expect("lock").clone();
    assert!(acked.len() >= 200);

    let mut proc2 = spawn_server(&config_path);
    let missing = eventually(60, "every 250'd message at the ERP", || async {
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
