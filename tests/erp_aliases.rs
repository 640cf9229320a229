//! Live alias check against the ERP (issue 15 item 4): an `odoo` route with
//! `validate_aliases` reads Odoo's `mail.alias` table (the XML-RPC stand-in of
//! [`common::fake_odoo`]); as a domain's catchall it then takes only those aliases, and RCPT
//! to anything else gets 550 5.1.1. The table is persisted: an ERP that is down keeps the
//! last one, and one that never answered refuses nothing.

mod common;

use common::fake_odoo::{FakeOdoo, Options};
use common::{Listener, TestServer, eventually};

/// `shop.test` falls through to the `odoo` route, which validates against `odoo_url`.
fn config(odoo_url: &str) -> String {
    format!(
        "[[domains]]\nname = \"shop.test\"\ncatchall = \"odoo\"\n\
         [[aliases]]\naddress = \"orders@shop.test\"\nroute = \"crm\"\n\
         [routes.odoo]\nkind = \"odoo\"\nurl = \"{odoo_url}\"\ndatabase = \"prod\"\nuid = 2\n\
         password = \"s3cret\"\nvalidate_aliases = true\nalias_refresh = \"1h\"\ntimeout = \"5s\"\n"
    )
}

/// The code RCPT TO:<to> gets on the inbound listener.
async fn rcpt_code(srv: &TestServer, to: &str) -> u16 {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    let r = c.cmd(&format!("RCPT TO:<{to}>")).await;
    if r.code == 550 {
        assert!(r.lines.join(" ").contains("5.1.1"), "{:?}", r.lines);
    }
    r.code
}

#[tokio::test]
async fn only_aliases_odoo_knows_or_mxgate_lists_are_taken_and_the_table_outlives_the_erp() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(
        dir.path(),
        Options {
            aliases: &["helpdesk", "Jobs"],
            ..Options::default()
        },
    );
    let mut srv = TestServer::start(&config(&odoo.url())).await;
    // Until the table is read the catchall takes everything; then unknown names are refused.
    eventually(10, "the alias table read", || async {
        (rcpt_code(&srv, "nobody@shop.test").await == 550).then_some(())
    })
    .await;
    for (to, code) in [
        ("helpdesk@shop.test", 250),
        ("jobs@shop.test", 250),
        ("helpdesk+urgent@shop.test", 250),
        ("orders@shop.test", 250), // in [[aliases]]
        ("typo@shop.test", 550),
    ] {
        assert_eq!(rcpt_code(&srv, to).await, code, "{to}");
    }
    let searched = odoo
        .calls()
        .iter()
        .any(|c| c["args"][3] == "mail.alias" && c["args"][4] == "search_read");
    assert!(searched, "{:?}", odoo.calls());

    // Odoo goes away; a restart reads the persisted table.
    drop(odoo);
    srv.restart().await;
    assert_eq!(rcpt_code(&srv, "typo@shop.test").await, 550);
    assert_eq!(rcpt_code(&srv, "helpdesk@shop.test").await, 250);
    srv.shutdown().await;
}

#[tokio::test]
async fn an_erp_that_never_answered_makes_nothing_refused() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let srv = TestServer::start(&config(&format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(rcpt_code(&srv, "anyone@shop.test").await, 250);
    srv.shutdown().await;
}
