//! Graceful shutdown: stop accepting, let a transaction in progress finish, 421 to the rest.

mod common;

use common::{Listener, TestServer};

#[tokio::test]
async fn shutdown_lets_a_transfer_finish_and_tells_idle_sessions_421() {
    let srv = TestServer::start("").await;
    let mut idle = srv.smtp(Listener::Inbound).await;
    idle.cmd("EHLO idle.test").await.expect_code(250);

    let mut busy = srv.smtp(Listener::Inbound).await;
    busy.cmd("EHLO busy.test").await.expect_code(250);
    busy.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    busy.cmd("RCPT TO:<sales@example.test>")
        .await
        .expect_code(250);
    busy.cmd("DATA").await.expect_code(354);
    busy.send_raw(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .await;

    srv.running().trigger_shutdown();
    // The idle session is told right away.
    idle.read_reply().await.expect(421, "4.3.2");
    assert!(idle.is_closed().await, "closed after 421");

    // The transfer in progress completes and is acknowledged...
    let r = busy.send_data("second half\r\n").await;
    r.expect_code(250);
    // ...and the next command is refused.
    busy.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect(421, "4.3.2");

    // No new connections once shut down.
    let addr = srv.addr(Listener::Inbound);
    srv.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    let erp = common::Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mxgate.toml");
    let dns = common::dns::DnsServer::start().await;
    let toml = common::base_toml(dir.path(), &erp.url(), &dns.config_toml());
    std::fs::write(&config, toml).expect("write config");
    let mut proc = common::process::spawn_server(&config);
    let mut c = common::SmtpClient::connect(proc.inbound).await;
    c.read_reply().await.expect_code(220);
    c.cmd("EHLO client.test").await.expect_code(250);
    proc.sigterm();
    c.read_reply().await.expect(421, "4.3.2");
    assert_eq!(proc.wait_exit(30), Some(0));
}
