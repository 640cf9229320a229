//! DANE (RFC 7672) end to end: an in-process hickory-server authoritative for a root zone
//! signed in the test with a key generated here (the resolver's only trust anchor), a
//! delegated unsigned zone, and a loopback sink MX whose certificate the TLSA records name
//! (or do not). ERP submission → queue → MX → sent over verified TLS, or deferred with the
//! reason.

mod common;
#[path = "dane/signed_zone.rs"]
mod signed_zone;

use hickory_proto::dnssec::SigningKey;
use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::DNSKEY;

use common::messages::raw;
use common::sink::{Received, Sink, SinkOptions, SinkTls};
use common::submit::{submit, submit_requiretls, user_toml};
use common::{Listener, TestServer, eventually};
use mxgate::queue::{QueuedMessage, RcptState};
use signed_zone::{Assoc, STS_DANE, SignedDns, server_tls, test_ca};

/// mxgate relaying by MX to `sink`, its resolver on `dns`.
async fn mxgate(sink: &Sink, dns: &SignedDns) -> TestServer {
    let extra = format!(
        "{}{}[relay]\ndirect_mx = true\nmx_port = {}\n",
        user_toml(&["example.test"]),
        dns.config_toml(),
        sink.addr.port()
    );
    TestServer::start(&extra).await
}

async fn send(srv: &TestServer, to: &str) {
    let subject = to.replace(['@', '.'], "-");
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &[to],
        &raw("odoo@example.test", to, &subject),
    )
    .await
    .expect("submitted");
}

/// The queued message to `to`, once its recipient is in `state`.
async fn wait_state(srv: &TestServer, to: &str, state: RcptState) -> QueuedMessage {
    let queue = srv.running().queue.clone();
    eventually(20, &format!("the message to {to} {state:?}"), || {
        let q = queue.clone();
        async move {
            q.list(None, 1000)
                .into_iter()
                .find(|m| m.recipients[0].address == to && m.recipients[0].state == state)
        }
    })
    .await
}

async fn wait_received(sink: &Sink, to: &str) -> Received {
    eventually(20, &format!("the message to {to} at the sink"), || async {
        sink.received()
            .into_iter()
            .find(|r| r.rcpts.iter().any(|x| x == to))
    })
    .await
}

/// TLS-RPT counts a DANE host's sessions under policy type `tlsa` (RFC 8460 §4.3).
async fn tlsa_sessions(srv: &TestServer, result: &str) {
    let labels = [("policy", "tlsa"), ("result", result)];
    eventually(
        20,
        &format!("a tlsa session counted as {result}"),
        || async {
            srv.metric("mxgate_outbound_tls_sessions_total", &labels)
                .await
                .filter(|n| *n >= 1.0)
        },
    )
    .await;
}

/// The `mxgate_dnssec_validating` gauge, once the start-up probe has set it.
async fn dnssec_validating(srv: &TestServer) -> f64 {
    eventually(20, "mxgate_dnssec_validating set", || async {
        srv.metric("mxgate_dnssec_validating", &[]).await
    })
    .await
}

fn last_reply(m: &QueuedMessage) -> String {
    m.recipients[0].last_reply.clone().unwrap_or_default()
}

#[tokio::test]
async fn dane_ee_match_delivers_over_tls_and_a_bogus_tlsa_answer_defers() {
    let (acceptor, spki) = server_tls(&["mx.secure.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(spki), Assoc::Ta201(vec![0])).await;
    let srv = mxgate(&sink, &dns).await;

    send(&srv, "ann@secure.test").await;
    let got = wait_received(&sink, "ann@secure.test").await;
    assert!(got.tls, "delivered over TLS");
    let m = wait_state(&srv, "ann@secure.test", RcptState::Sent).await;
    assert!(
        last_reply(&m).contains("mx mx.secure.test"),
        "{}",
        last_reply(&m)
    );

    tlsa_sessions(&srv, "success").await;
    assert_eq!(
        dnssec_validating(&srv).await,
        1.0,
        "the trust anchor validates"
    );

    // Same sink, same certificate, but the TLSA answer fails validation: never used.
    send(&srv, "bob@bogus.test").await;
    let m = wait_state(&srv, "bob@bogus.test", RcptState::Deferred).await;
    let reason = last_reply(&m);
    assert!(reason.contains("DNSSEC validation failed"), "{reason}");
    assert!(reason.contains("mx.bogus.test"), "{reason}");
    assert!(
        !sink
            .received()
            .iter()
            .any(|r| r.rcpts.iter().any(|x| x == "bob@bogus.test")),
        "nothing reaches the host of a bogus TLSA RRset"
    );
    tlsa_sessions(&srv, "dnssec-invalid").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_certificate_the_tlsa_records_do_not_name_defers_with_the_reason() {
    let (acceptor, _) = server_tls(&["mx.secure.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    // The TLSA record names another key.
    let (_, other) = server_tls(&["mx.secure.test"], None);
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(other), Assoc::Ta201(vec![0])).await;
    let srv = mxgate(&sink, &dns).await;

    send(&srv, "ann@secure.test").await;
    let m = wait_state(&srv, "ann@secure.test", RcptState::Deferred).await;
    let reason = last_reply(&m);
    assert!(reason.contains("no TLSA record matches"), "{reason}");
    assert!(
        sink.received().is_empty(),
        "no message over an unauthenticated session"
    );
    tlsa_sessions(&srv, "tlsa-invalid").await;

    // The unsigned zone is delivered as before DANE: opportunistic STARTTLS, unverified.
    send(&srv, "cy@plain.test").await;
    let got = wait_received(&sink, "cy@plain.test").await;
    assert!(got.tls, "opportunistic STARTTLS still used");
    wait_state(&srv, "cy@plain.test", RcptState::Sent).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn dane_ta_chains_to_the_published_ca_and_checks_the_mx_name() {
    let ca = test_ca();
    let (acceptor, _) = server_tls(&["mx.ta.test"], Some(&ca));
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    let ca_der = ca.der().as_ref().to_vec();
    // secure.test publishes the same CA as DANE-TA too, but the leaf names mx.ta.test only.
    let dns = SignedDns::start(
        sink.addr.port(),
        Assoc::Ta201(ca_der.clone()),
        Assoc::Ta201(ca_der),
    )
    .await;
    let srv = mxgate(&sink, &dns).await;

    send(&srv, "dee@ta.test").await;
    let got = wait_received(&sink, "dee@ta.test").await;
    assert!(got.tls);
    wait_state(&srv, "dee@ta.test", RcptState::Sent).await;

    send(&srv, "eve@secure.test").await;
    let m = wait_state(&srv, "eve@secure.test", RcptState::Deferred).await;
    let reason = last_reply(&m);
    assert!(
        reason.contains("names neither the MX host nor the domain"),
        "{reason}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn tlsa_without_starttls_defers_and_never_sends_in_plaintext() {
    let (_, spki) = server_tls(&["mx.secure.test"], None);
    let sink = Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await;
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(spki), Assoc::Ta201(vec![0])).await;
    let srv = mxgate(&sink, &dns).await;

    send(&srv, "ann@secure.test").await;
    let m = wait_state(&srv, "ann@secure.test", RcptState::Deferred).await;
    let reason = last_reply(&m);
    assert!(reason.contains("STARTTLS is not offered"), "{reason}");
    assert!(reason.contains("DANE"), "{reason}");

    // Without TLSA (the unsigned zone) the same plaintext-only host takes the mail.
    send(&srv, "cy@plain.test").await;
    let got = wait_received(&sink, "cy@plain.test").await;
    assert!(!got.tls);
    assert!(
        !sink
            .received()
            .iter()
            .any(|r| r.rcpts.iter().any(|x| x == "ann@secure.test")),
        "the DANE host's mail never went in plaintext"
    );
    srv.shutdown().await;
}

/// RFC 8461 §2: DANE decides for an MX host with TLSA records, whatever the domain's
/// MTA-STS policy says: an `enforce` policy naming only another host does not drop it.
#[tokio::test]
async fn a_dane_host_the_enforced_sts_policy_does_not_name_is_delivered_to_via_dane() {
    let (acceptor, spki) = server_tls(&["mx.sts-dane.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(spki), Assoc::Ta201(vec![0])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::test_ca::TestCa::new(dir.path(), "sts");
    let policies =
        common::policy_host::PolicyHost::start(ca.acceptor_for(&["mta-sts.sts-dane.test"])).await;
    policies.set_policy(
        STS_DANE,
        "version: STSv1\nmode: enforce\nmx: mx2.sts-dane.test\nmax_age: 86400\n",
    );
    let extra = format!(
        "{}{}[relay]\ndirect_mx = true\nmx_port = {}\n\
         [relay.mta_sts]\npolicy_port = {}\nca_file = \"{}\"\nfetch_timeout = \"5s\"\n",
        user_toml(&["example.test"]),
        dns.config_toml(),
        sink.addr.port(),
        policies.addr.port(),
        ca.pem_path.display()
    );
    let srv = TestServer::start(&extra).await;

    send(&srv, "ann@sts-dane.test").await;
    let got = wait_received(&sink, "ann@sts-dane.test").await;
    assert!(got.tls, "delivered over TLS");
    let m = wait_state(&srv, "ann@sts-dane.test", RcptState::Sent).await;
    assert!(
        last_reply(&m).contains("mx mx.sts-dane.test"),
        "{}",
        last_reply(&m)
    );
    assert!(policies.requests() >= 1, "the MTA-STS policy was fetched");
    tlsa_sessions(&srv, "success").await;
    srv.shutdown().await;
}

/// A trust anchor that is not the zone's key (a stale or mistyped `dnssec_trust_anchor`):
/// nothing validates, so DANE is off and MX hosts get opportunistic TLS (a certificate the
/// TLSA record does not name is taken, where DANE would defer). Not silent: the gauge
/// `mxgate_dnssec_validating` is 0 from start-up on.
#[tokio::test]
async fn a_trust_anchor_the_zone_does_not_match_shows_as_dnssec_validating_0() {
    let (acceptor, _) = server_tls(&["mx.secure.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    let (_, other) = server_tls(&["mx.secure.test"], None);
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(other), Assoc::Ta201(vec![0])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong-root.key");
    let key =
        Ed25519SigningKey::from_pkcs8(&Ed25519SigningKey::generate_pkcs8().expect("generate key"))
            .expect("key");
    let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
    std::fs::write(&wrong, format!(". 300 IN DNSKEY {dnskey}\n")).expect("write anchor");
    let extra = format!(
        "{}{}[relay]\ndirect_mx = true\nmx_port = {}\n",
        user_toml(&["example.test"]),
        dns.config_toml_anchored(&wrong),
        sink.addr.port()
    );
    let srv = TestServer::start(&extra).await;

    assert_eq!(dnssec_validating(&srv).await, 0.0, "before any mail");
    send(&srv, "ann@secure.test").await;
    let got = wait_received(&sink, "ann@secure.test").await;
    assert!(got.tls, "opportunistic STARTTLS");
    wait_state(&srv, "ann@secure.test", RcptState::Sent).await;
    assert_eq!(dnssec_validating(&srv).await, 0.0);
    srv.shutdown().await;
}

/// RFC 8689 §4.2.1: REQUIRETLS mail may go to an MX host when the MX answer was
/// DNSSEC-validated, with no MTA-STS policy: the DANE-authenticated host (its TLSA record
/// names the certificate's key) that offers REQUIRETLS gets it, the parameter passed on.
#[tokio::test]
async fn requiretls_mail_goes_to_a_dane_host_whose_mx_answer_is_dnssec_validated() {
    let (acceptor, spki) = server_tls(&["mx.secure.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    sink.offer("REQUIRETLS");
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(spki), Assoc::Ta201(vec![0])).await;
    let srv = mxgate(&sink, &dns).await;

    submit_requiretls(srv.addr(Listener::Submission), "ann@secure.test").await;
    let got = wait_received(&sink, "ann@secure.test").await;
    assert!(got.tls, "delivered over TLS");
    assert!(got.mail_line.ends_with(" REQUIRETLS"), "{}", got.mail_line);
    wait_state(&srv, "ann@secure.test", RcptState::Sent).await;
    srv.shutdown().await;
}

/// RFC 8689 §4.2.1 wants the certificate verified by DANE or a trusted chain. A host whose
/// TLSA records are none usable gets encryption without any check (RFC 7672 §2.2): plain
/// mail goes, but REQUIRETLS mail is not sent over that unverified session (its
/// self-signed certificate fails the PKIX check) and fails 5.7.30.
#[tokio::test]
async fn requiretls_mail_is_not_sent_to_a_dane_host_whose_tlsa_records_verify_nothing() {
    let (acceptor, _) = server_tls(&["mx.encrypt.test"], None);
    let sink = Sink::start_with_certificate(SinkOptions::default(), acceptor).await;
    sink.offer("REQUIRETLS");
    let (_, spki) = server_tls(&["mx.secure.test"], None);
    let dns = SignedDns::start(sink.addr.port(), Assoc::Ee311(spki), Assoc::Ta201(vec![0])).await;
    let srv = mxgate(&sink, &dns).await;

    send(&srv, "bob@encrypt.test").await;
    let got = wait_received(&sink, "bob@encrypt.test").await;
    assert!(got.tls, "STARTTLS is mandatory");
    wait_state(&srv, "bob@encrypt.test", RcptState::Sent).await;

    submit_requiretls(srv.addr(Listener::Submission), "ann@encrypt.test").await;
    let m = wait_state(&srv, "ann@encrypt.test", RcptState::Bounced).await;
    assert!(
        last_reply(&m).starts_with("550 5.7.30"),
        "{}",
        last_reply(&m)
    );
    assert_eq!(sink.transactions(), 1, "no MAIL for the REQUIRETLS message");
    srv.shutdown().await;
}
