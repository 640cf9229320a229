//! DNSBL / DNSWL at connect (issue 16 item 2), through the socket, with the in-process DNS
//! server holding the lists: reject at the banner, tag on delivered mail, return codes, an
//! allow zone, IPv6 nibble names, the resolver's cache, and DNS trouble that never blocks.

mod common;

use std::net::IpAddr;

use common::{Erp, Listener, SmtpClient, TestServer, dns::DnsServer, eventually, message};
use mxgate::config::ListenerConfig;
use mxgate::metrics::SMTP_POLICY;

const LOOPBACK_V4: &str = "1.0.0.127";

fn listed(code: &str) -> IpAddr {
    code.parse().expect("ip")
}

/// Connects and returns the first reply (the banner or its replacement).
async fn banner(srv: &TestServer) -> (SmtpClient, common::SmtpReply) {
    let mut c = SmtpClient::connect(srv.addr(Listener::Inbound)).await;
    let r = c.read_reply().await;
    (c, r)
}

#[tokio::test]
async fn a_client_on_a_reject_zone_gets_554_instead_of_the_banner_and_is_disconnected() {
    let srv = TestServer::start("[[spam.dnsbl]]\nzone = \"bl.test\"\n").await;
    srv.dns
        .a(&format!("{LOOPBACK_V4}.bl.test"), listed("127.0.0.2"));
    let (mut c, r) = banner(&srv).await;
    r.expect(
        554,
        "5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test",
    );
    assert!(c.is_closed().await);
    let labels = [("check", "dnsbl"), ("action", "reject")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    // Looked up once, then answered from the resolver's cache for the record's TTL.
    let asked = srv.dns.queries();
    let (_, again) = banner(&srv).await;
    again.expect_code(554);
    assert_eq!(
        srv.dns.queries(),
        asked,
        "second connection asked DNS again"
    );
    // The ERP's submission port is not a postscreen.
    srv.smtp(Listener::Submission).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_on_a_tag_zone_is_accepted_and_its_mail_carries_x_mxgate_dnsbl() {
    let srv = TestServer::start(
        "[[spam.dnsbl]]\nzone = \"bl.test\"\n[[spam.dnsbl]]\nzone = \"tag.test\"\naction = \"tag\"\n",
    )
    .await;
    srv.dns
        .a(&format!("{LOOPBACK_V4}.tag.test"), listed("127.0.0.3"));
    srv.send_inbound("a@client.test", &["sales@example.test"], &message("t", "x"))
        .await
        .expect_code(250);
    let push = eventually(10, "ERP push", || async {
        srv.erp.pushes().into_iter().next()
    })
    .await;
    let raw = String::from_utf8(push.body).expect("utf8");
    let head = &raw[..raw.find("\r\n\r\n").expect("header end")];
    assert!(
        head.contains("\r\nX-Mxgate-Dnsbl: tag.test=127.0.0.3; client=[127.0.0.1]\r\n"),
        "{head}"
    );
    let labels = [("check", "dnsbl"), ("action", "tag")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn return_codes_choose_the_answers_that_count_and_an_allow_zone_overrides_reject() {
    let srv = TestServer::start(
        "[[spam.dnsbl]]\nzone = \"codes.test\"\nreturn_codes = [\"127.0.0.4\"]\n\
         [[spam.dnsbl]]\nzone = \"refused.test\"\n",
    )
    .await;
    srv.dns
        .a(&format!("{LOOPBACK_V4}.codes.test"), listed("127.0.0.2"));
    // Spamhaus's "query refused" answer must never block anyone.
    srv.dns.a(
        &format!("{LOOPBACK_V4}.refused.test"),
        listed("127.255.255.254"),
    );
    banner(&srv).await.1.expect_code(220);
    srv.shutdown().await;

    let srv = TestServer::start(
        "[[spam.dnsbl]]\nzone = \"bl.test\"\n[[spam.dnsbl]]\nzone = \"wl.test\"\naction = \"allow\"\n",
    )
    .await;
    srv.dns
        .a(&format!("{LOOPBACK_V4}.bl.test"), listed("127.0.0.2"));
    srv.dns
        .a(&format!("{LOOPBACK_V4}.wl.test"), listed("127.0.10.1"));
    banner(&srv).await.1.expect_code(220);
    let labels = [("check", "dnsbl"), ("action", "allow")];
    assert_eq!(srv.metric(SMTP_POLICY, &labels).await, Some(1.0));
    srv.shutdown().await;
}

#[tokio::test]
async fn an_ipv6_client_is_looked_up_in_nibble_form() {
    let srv = TestServer::start_configured(
        Erp::start().await,
        "[[spam.dnsbl]]\nzone = \"bl.test\"\n",
        |c| {
            c.listeners.inbound = Some(ListenerConfig {
                bind: "[::1]:0".parse().expect("addr"),
            });
        },
    )
    .await;
    let nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";
    srv.dns
        .a(&format!("{nibbles}.bl.test"), listed("127.0.0.2"));
    banner(&srv).await.1.expect(
        554,
        "5.7.1 Service unavailable; client [::1] blocked using bl.test",
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dns_trouble_never_blocks_a_client() {
    let dead = DnsServer::blackhole().await;
    let srv = TestServer::start_configured(
        Erp::start().await,
        "[[spam.dnsbl]]\nzone = \"bl.test\"\n[dns]\ntimeout = \"200ms\"\n",
        |c| c.dns.nameservers = vec![dead.addr],
    )
    .await;
    let (mut c, r) = banner(&srv).await;
    r.expect_code(220);
    c.cmd("EHLO client.test").await.expect_code(250);
    assert!(dead.queries() > 0, "the list was asked");
    srv.shutdown().await;
}
