//! Bounces back into the ERP (issue 15 item 3). Odoo sends with the envelope sender
//! `bounce+<mail_id>-<model>-<res_id>@<alias domain>` and counts a bounce only when one
//! reaches that address. mxgate relays with its own VERP sender; when the remote's DSN comes
//! back, the bounce is fed to the original sender through the domain's ERP route — here the
//! Odoo XML-RPC stand-in (`tests/py/fake_odoo.py`), whose `message_process` must receive it.

mod common;

use common::fake_odoo::{FakeOdoo, Options};
use common::messages::dsn_user_unknown;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::{Listener, TestServer, eventually};
use mxgate::queue::RcptState;

const ODOO_SENDER: &str = "bounce+42-crm.lead-7@example.test";

/// Odoo on `bounce@example.test` (its bounce alias), a submission user, a smart host.
fn config(odoo: &FakeOdoo, sink: &Sink, feedback: bool) -> String {
    format!(
        "{}[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\npriority = 1\nsecurity = \"none\"\n\
         [[domains]]\nname = \"shop.test\"\nbounce_feedback = {feedback}\n\
         [[aliases]]\naddress = \"bounce@shop.test\"\nroute = \"odoo\"\n\
         [[aliases]]\naddress = \"bounce@example.test\"\nroute = \"odoo\"\n\
         [routes.odoo]\nkind = \"odoo\"\nurl = \"http://127.0.0.1:{}\"\ndatabase = \"prod\"\nuid = 2\npassword = \"s3cret\"\n",
        user_toml(&["example.test", "shop.test"]),
        sink.addr.port(),
        odoo.port
    )
}

/// Submits from `sender` to customer@remote.test; returns the relayed copy's VERP token
/// once the sink has it.
async fn relay_one(srv: &TestServer, sink: &Sink, sender: &str) -> String {
    let from_domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let raw = format!(
        "From: Shop <shop@{from_domain}>\r\nTo: customer@remote.test\r\nSubject: Quotation S00042\r\nMessage-ID: <q42@{from_domain}>\r\n\r\nYour quotation.\r\n"
    );
    submit(
        srv.addr(Listener::Submission),
        sender,
        &["customer@remote.test"],
        &raw,
    )
    .await
    .expect("submitted");
    let got = eventually(20, "relayed to the sink", || async {
        sink.received()
            .into_iter()
            .find(|m| m.data.contains("S00042"))
    })
    .await;
    let local = got.mail_from.split('@').next().expect("local part");
    local
        .strip_prefix("bounce+")
        .expect("VERP sender")
        .to_string()
}

async fn send_dsn(srv: &TestServer, token: &str) {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd("EHLO mx.remote.test").await.expect_code(250);
    c.cmd("MAIL FROM:<>").await.expect_code(250);
    c.cmd(&format!("RCPT TO:<bounce+{token}@example.test>"))
        .await
        .expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    c.send_data(&dsn_user_unknown("mx.remote.test", "customer@remote.test"))
        .await
        .expect_code(250);
}

#[tokio::test]
async fn odoo_receives_the_bounce_at_its_original_bounce_address() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(dir.path(), Options::default());
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let srv = TestServer::start(&config(&odoo, &sink, true)).await;
    let token = relay_one(&srv, &sink, ODOO_SENDER).await;
    send_dsn(&srv, &token).await;

    let raw = eventually(20, "message_process gets the bounce", || async {
        odoo.processed().into_iter().next()
    })
    .await;
    // Odoo's bounce routing reads the bounce alias + "<id>-<model>-<res_id>" from To.
    assert!(raw.contains(&format!("To: <{ODOO_SENDER}>")), "{raw}");
    assert!(raw.contains("Content-Type: multipart/report; report-type=delivery-status"));
    assert!(
        raw.contains("Final-Recipient: rfc822; customer@remote.test"),
        "{raw}"
    );
    assert!(raw.contains("Status: 5.1.1"), "{raw}");
    assert!(raw.contains("bounce category: Invalid address"), "{raw}");
    assert!(
        raw.contains("Subject: Quotation S00042"),
        "original headers attached: {raw}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn bounce_feedback_false_feeds_nothing_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(dir.path(), Options::default());
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let srv = TestServer::start(&config(&odoo, &sink, false)).await;
    let token = relay_one(&srv, &sink, "bounce+43-crm.lead-8@shop.test").await;
    send_dsn(&srv, &token).await;
    let q = srv.running().queue.clone();
    eventually(20, "recipient bounced and the DSN processed", || async {
        let bounced = q
            .list(Some(RcptState::Bounced), 10)
            .iter()
            .any(|m| m.mail_from == "bounce+43-crm.lead-8@shop.test");
        (bounced && q.pending_bounces().is_empty()).then_some(())
    })
    .await;
    // The feedback would have been queued in the batch that marked the recipient bounced.
    let fed_back = q.list(None, 100).into_iter().any(|m| {
        m.recipients
            .iter()
            .any(|r| r.address.contains("43-crm.lead-8"))
    });
    assert!(!fed_back, "no bounce queued for the ERP");
    assert!(odoo.processed().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn a_refusal_during_the_relay_also_reaches_odoo_at_its_bounce_address() {
    let dir = tempfile::tempdir().expect("tmp");
    let odoo = FakeOdoo::start(dir.path(), Options::default());
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    sink.script_rcpt(&["550 5.1.1 <customer@remote.test>: User unknown"]);
    let srv = TestServer::start(&config(&odoo, &sink, true)).await;
    let raw = "From: Shop <shop@example.test>\r\nTo: customer@remote.test\r\nSubject: Quotation S00043\r\n\r\nx\r\n";
    submit(
        srv.addr(Listener::Submission),
        ODOO_SENDER,
        &["customer@remote.test"],
        raw,
    )
    .await
    .expect("submitted");
    let raw = eventually(20, "message_process gets the DSN", || async {
        odoo.processed().into_iter().next()
    })
    .await;
    assert!(raw.contains(&format!("To: <{ODOO_SENDER}>")), "{raw}");
    assert!(raw.contains("User unknown"), "{raw}");
    srv.shutdown().await;
}
