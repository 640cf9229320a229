//! Stage ② end to end: a real server, a real SMTP client on 127.0.0.1, an in-process
//! authoritative DNS server holding each case's SPF/DKIM/DMARC records, messages signed here
//! with mail-auth's DKIM signer, and the ERP receiving the result.

mod common;

use std::path::PathBuf;
use std::time::SystemTime;

use common::dns::DnsServer;
use common::erp::Push;
use common::{Erp, Listener, SmtpReply, TestServer, eventually};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mxgate::auth::keys;
use mxgate::config::{Config, DkimAlgorithm};
use mxgate::metrics::{AUTH_RESULTS, INBOUND_MESSAGES};

/// Records for client.test that authorise the test client (127.0.0.1), and ones that do not.
const SPF_PASS: &str = "v=spf1 ip4:127.0.0.1 -all";
const SPF_FAIL: &str = "v=spf1 ip4:192.0.2.1 -all";

/// A DKIM key on disk plus the TXT record that publishes it.
struct TestKey {
    _dir: tempfile::TempDir,
    path: PathBuf,
    alg: DkimAlgorithm,
    record: String,
}

impl TestKey {
    fn new(alg: DkimAlgorithm) -> TestKey {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        let record = keys::generate_to(&path, alg).expect("keygen").dns_record();
        TestKey {
            _dir: dir,
            path,
            alg,
            record,
        }
    }

    /// `raw` with a DKIM-Signature (d=`domain`, s=`selector`) on top; `expires` = x= seconds.
    fn sign(&self, domain: &str, selector: &str, raw: &str, expires: Option<u64>) -> String {
        let key = keys::load(&self.path, self.alg).expect("load key").signing;
        let mut signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID"]);
        if let Some(x) = expires {
            signer = signer.expiration(x);
        }
        let sig = signer.sign(raw.as_bytes()).expect("sign");
        format!("{}{raw}", sig.to_header())
    }
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: sales@example.test\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{subject}@client.test>\r\n\r\nPlease quote 10 units.\r\n"
    )
}

async fn start() -> TestServer {
    TestServer::start("").await
}

async fn start_with(change: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_configured(Erp::start().await, "", change).await
}

/// One message over the inbound listener: EHLO `helo`, MAIL FROM `mail_from`, RCPT sales@.
async fn send(srv: &TestServer, helo: &str, mail_from: &str, raw: &str) -> SmtpReply {
    let mut c = srv.smtp(Listener::Inbound).await;
    c.cmd(&format!("EHLO {helo}")).await.expect_code(250);
    c.cmd(&format!("MAIL FROM:<{mail_from}>"))
        .await
        .expect_code(250);
    c.cmd("RCPT TO:<sales@example.test>").await.expect_code(250);
    c.cmd("DATA").await.expect_code(354);
    let reply = c.send_data(raw).await;
    c.cmd("QUIT").await;
    reply
}

/// Sends and waits for the ERP to receive it.
async fn deliver(srv: &TestServer, mail_from: &str, raw: &str) -> Push {
    send(srv, "client.test", mail_from, raw)
        .await
        .expect_code(250);
    eventually(10, "the ERP push", || async { srv.erp.pushes().pop() }).await
}

/// The header fields of the pushed message, unfolded, in order.
fn fields(push: &Push) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&push.body);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Our Authentication-Results (asserted to be the only one claiming our authserv-id).
fn results(push: &Push) -> String {
    let ours: Vec<String> = fields(push)
        .into_iter()
        .filter(|(n, v)| {
            n.eq_ignore_ascii_case("Authentication-Results") && v.starts_with("mx.example.test;")
        })
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ours.len(), 1, "exactly one A-R of ours: {ours:?}");
    ours[0].clone()
}

/// The verdict the ERP got as the `X-Mxgate-Auth` HTTP header.
fn erp_auth(push: &Push) -> String {
    push.header("x-mxgate-auth")
        .expect("X-Mxgate-Auth on the push")
        .to_string()
}

// ---------------------------------------------------------------- SPF

async fn spf_case(record: Option<&str>) -> (String, String) {
    let srv = start().await;
    if let Some(r) = record {
        srv.dns.txt("client.test", r);
    }
    let push = deliver(
        &srv,
        "alice@client.test",
        &message("alice@client.test", "spf"),
    )
    .await;
    let out = (results(&push), erp_auth(&push));
    srv.shutdown().await;
    out
}

#[tokio::test]
async fn spf_pass_is_recorded_in_the_header_the_erp_push_and_the_metrics() {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_PASS);
    let push = deliver(
        &srv,
        "alice@client.test",
        &message("alice@client.test", "p"),
    )
    .await;
    let ar = results(&push);
    assert!(
        ar.contains("spf=pass smtp.mailfrom=alice@client.test"),
        "{ar}"
    );
    assert!(ar.contains("spf=pass smtp.helo=client.test"), "{ar}");
    assert!(
        erp_auth(&push).starts_with("spf=pass "),
        "{}",
        erp_auth(&push)
    );
    // Our fields sit on top of the message, above our Received.
    let names: Vec<String> = fields(&push).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        &names[..3],
        ["X-Mxgate-Auth", "Authentication-Results", "Received"]
    );
    assert_eq!(
        srv.metric(AUTH_RESULTS, &[("method", "spf"), ("result", "pass")])
            .await,
        Some(1.0)
    );
    assert_eq!(
        srv.metric(AUTH_RESULTS, &[("method", "dkim"), ("result", "none")])
            .await,
        Some(1.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn spf_fail_is_tagged_by_default_and_refused_where_the_domain_asks() {
    let (ar, auth) = spf_case(Some(SPF_FAIL)).await;
    assert!(
        ar.contains("spf=fail smtp.mailfrom=alice@client.test"),
        "{ar}"
    );
    assert!(auth.starts_with("spf=fail"), "{auth}");

    let srv = start_with(|c| c.domains[0].spf_reject = true).await;
    srv.dns.txt("client.test", SPF_FAIL);
    let r = send(
        &srv,
        "client.test",
        "alice@client.test",
        &message("alice@client.test", "f"),
    )
    .await;
    r.expect(550, "5.7.23");
    assert!(
        r.text().contains("client.test does not permit 127.0.0.1"),
        "{}",
        r.text()
    );
    assert_eq!(
        srv.metric(
            INBOUND_MESSAGES,
            &[("result", "rejected"), ("reason", "spf")]
        )
        .await,
        Some(1.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn spf_softfail_neutral_none_and_permerror_are_reported_not_refused() {
    for (record, want) in [
        (Some("v=spf1 ip4:192.0.2.1 ~all"), "spf=softfail"),
        (Some("v=spf1 ?all"), "spf=neutral"),
        (None, "spf=none"),
        (Some("v=spf1 ip4:not-an-address -all"), "spf=permerror"),
    ] {
        let (ar, auth) = spf_case(record).await;
        assert!(
            ar.contains(&format!("{want} smtp.mailfrom=alice@client.test")),
            "{record:?}: {ar}"
        );
        assert!(auth.starts_with(want), "{record:?}: {auth}");
    }
}

#[tokio::test]
async fn dns_server_down_is_a_temporary_failure_never_a_permanent_one() {
    let down = DnsServer::blackhole().await;
    let srv = TestServer::start(&down.config_toml()).await;
    let r = send(
        &srv,
        "client.test",
        "alice@client.test",
        &message("alice@client.test", "t"),
    )
    .await;
    r.expect(451, "4.7.5");
    assert_eq!(
        srv.metric(AUTH_RESULTS, &[("method", "spf"), ("result", "temperror")])
            .await,
        Some(1.0)
    );
    assert_eq!(
        srv.metric(
            INBOUND_MESSAGES,
            &[("result", "tempfail"), ("reason", "auth_temperror")]
        )
        .await,
        Some(1.0)
    );
    srv.shutdown().await;

    // A domain that prefers delivery: accepted, temperror in the header.
    let srv = TestServer::start_configured(Erp::start().await, &down.config_toml(), |c| {
        c.domains[0].auth_temperror = mxgate::config::TempErrorAction::Accept
    })
    .await;
    let push = deliver(
        &srv,
        "alice@client.test",
        &message("alice@client.test", "t2"),
    )
    .await;
    let ar = results(&push);
    assert!(
        ar.contains("spf=temperror smtp.mailfrom=alice@client.test"),
        "{ar}"
    );
    assert!(
        ar.contains("dmarc=temperror header.from=client.test"),
        "{ar}"
    );
    srv.shutdown().await;
}

// ---------------------------------------------------------------- DKIM

/// Sends `raw` from client.test (SPF pass) and returns our A-R and the ERP verdict.
async fn dkim_case(key: &TestKey, publish: bool, raw: &str) -> (String, String) {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_PASS);
    if publish {
        srv.dns.txt("s1._domainkey.client.test", &key.record);
    }
    let push = deliver(&srv, "alice@client.test", raw).await;
    let out = (results(&push), erp_auth(&push));
    srv.shutdown().await;
    out
}

#[tokio::test]
async fn dkim_rsa_signature_passes() {
    let key = TestKey::new(DkimAlgorithm::Rsa);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "d"),
        None,
    );
    let (ar, auth) = dkim_case(&key, true, &raw).await;
    assert!(
        ar.contains("dkim=pass header.d=client.test header.s=s1 header.b="),
        "{ar}"
    );
    assert!(auth.contains("dkim=pass"), "{auth}");
}

#[tokio::test]
async fn dkim_ed25519_signature_passes() {
    let key = TestKey::new(DkimAlgorithm::Ed25519);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "e"),
        None,
    );
    let (ar, _) = dkim_case(&key, true, &raw).await;
    assert!(
        ar.contains("dkim=pass header.d=client.test header.s=s1"),
        "{ar}"
    );
}

#[tokio::test]
async fn dkim_fails_when_the_body_was_modified() {
    let key = TestKey::new(DkimAlgorithm::Rsa);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "b"),
        None,
    );
    let raw = raw.replace("10 units", "99 units");
    let (ar, auth) = dkim_case(&key, true, &raw).await;
    assert!(
        ar.contains("dkim=fail (Calculated body hash does not match"),
        "{ar}"
    );
    assert!(auth.contains("dkim=fail"), "{auth}");
}

#[tokio::test]
async fn dkim_fails_when_a_signed_header_was_modified() {
    let key = TestKey::new(DkimAlgorithm::Rsa);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "h"),
        None,
    );
    let raw = raw.replace("Subject: h", "Subject: H!");
    let (ar, _) = dkim_case(&key, true, &raw).await;
    assert!(ar.contains("dkim=fail ("), "{ar}");
    assert!(ar.contains("header.d=client.test"), "{ar}");
}

#[tokio::test]
async fn dkim_expired_signature_is_not_a_pass() {
    let key = TestKey::new(DkimAlgorithm::Ed25519);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "x"),
        Some(1),
    );
    // x= is t+1 at one-second granularity: wait for the wall clock to pass it.
    let x = raw
        .split("x=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .expect("x= tag");
    eventually(5, "the signature to expire", || async {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        (now > x).then_some(())
    })
    .await;
    let (ar, auth) = dkim_case(&key, true, &raw).await;
    assert!(ar.contains("dkim=neutral (Signature expired)"), "{ar}");
    assert!(auth.contains("dkim=neutral"), "{auth}");
}

#[tokio::test]
async fn dkim_without_a_published_key_is_a_permerror() {
    let key = TestKey::new(DkimAlgorithm::Rsa);
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "k"),
        None,
    );
    let (ar, _) = dkim_case(&key, false, &raw).await;
    assert!(ar.contains("dkim=permerror ("), "{ar}");
    assert!(ar.contains("header.s=s1"), "{ar}");
}

// ---------------------------------------------------------------- DMARC

#[tokio::test]
async fn dmarc_passes_by_aligned_spf_alone() {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_PASS);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=reject");
    let push = deliver(
        &srv,
        "alice@client.test",
        &message("alice@client.test", "s"),
    )
    .await;
    let ar = results(&push);
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(
        ar.contains("dmarc=pass (p=reject) header.from=client.test"),
        "{ar}"
    );
    assert!(erp_auth(&push).contains("dmarc=pass"));
    assert_eq!(
        srv.metric(AUTH_RESULTS, &[("method", "dmarc"), ("result", "pass")])
            .await,
        Some(1.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dmarc_passes_by_aligned_dkim_alone() {
    let key = TestKey::new(DkimAlgorithm::Ed25519);
    let srv = start().await;
    srv.dns.txt("client.test", SPF_FAIL);
    srv.dns.txt("s1._domainkey.client.test", &key.record);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=reject");
    let raw = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "k1"),
        None,
    );
    let push = deliver(&srv, "alice@client.test", &raw).await;
    let ar = results(&push);
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(
        ar.contains("dmarc=pass (p=reject) header.from=client.test"),
        "{ar}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dmarc_fails_when_spf_and_dkim_pass_for_another_domain() {
    let key = TestKey::new(DkimAlgorithm::Ed25519);
    let srv = start().await;
    // An ESP sends for client.test with its own envelope and signature: nothing aligns.
    srv.dns.txt("esp.test", SPF_PASS);
    srv.dns.txt("s1._domainkey.esp.test", &key.record);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=none");
    let raw = key.sign("esp.test", "s1", &message("alice@client.test", "u"), None);
    let push = deliver(&srv, "bounces@esp.test", &raw).await;
    let ar = results(&push);
    assert!(
        ar.contains("spf=pass smtp.mailfrom=bounces@esp.test"),
        "{ar}"
    );
    assert!(ar.contains("dkim=pass header.d=esp.test"), "{ar}");
    assert!(
        ar.contains("dmarc=fail (p=none) header.from=client.test"),
        "{ar}"
    );
    assert!(
        erp_auth(&push).contains("dmarc=fail"),
        "{}",
        erp_auth(&push)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dmarc_reject_is_refused_with_550_and_the_reason() {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_FAIL);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=reject");
    let r = send(
        &srv,
        "client.test",
        "alice@client.test",
        &message("alice@client.test", "r"),
    )
    .await;
    r.expect(550, "5.7.1");
    assert!(
        r.text()
            .contains("Rejected by DMARC policy of client.test: no aligned SPF or DKIM pass"),
        "{}",
        r.text()
    );
    assert_eq!(
        srv.metric(
            INBOUND_MESSAGES,
            &[("result", "rejected"), ("reason", "dmarc")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        srv.metric(AUTH_RESULTS, &[("method", "dmarc"), ("result", "fail")])
            .await,
        Some(1.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn dmarc_reject_without_enforcement_and_quarantine_are_delivered_tagged() {
    for (policy, enforce) in [("quarantine", true), ("reject", false)] {
        let srv = start_with(|c| c.domains[0].dmarc_enforce = enforce).await;
        srv.dns.txt("client.test", SPF_FAIL);
        srv.dns
            .txt("_dmarc.client.test", &format!("v=DMARC1; p={policy}"));
        let push = deliver(
            &srv,
            "alice@client.test",
            &message("alice@client.test", "q"),
        )
        .await;
        let ar = results(&push);
        assert!(
            ar.contains(&format!(
                "dmarc=fail (p={policy} dis=quarantine) header.from=client.test"
            )),
            "{ar}"
        );
        let auth = erp_auth(&push);
        assert!(
            auth.contains(&format!("dmarc=fail dmarc.policy={policy}"))
                && auth.ends_with("disposition=quarantine"),
            "{auth}"
        );
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn forwarded_mail_breaks_spf_but_its_dkim_signature_keeps_dmarc_passing() {
    let key = TestKey::new(DkimAlgorithm::Rsa);
    // Even with SPF -all rejection on: DMARC is judged first (RFC 7489 §10.1).
    let srv = start_with(|c| c.domains[0].spf_reject = true).await;
    srv.dns.txt("client.test", SPF_FAIL);
    srv.dns.txt("s1._domainkey.client.test", &key.record);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=reject");
    let original = key.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "fw"),
        None,
    );
    // The forwarder (at 127.0.0.1, not in client.test's SPF) adds its trace, keeps the sender.
    let forwarded = format!(
        "Received: from mx.client.test by forwarder.test; Mon, 23 Nov 2026 08:00:05 +0000\r\n{original}"
    );
    let r = send(&srv, "forwarder.test", "alice@client.test", &forwarded).await;
    r.expect_code(250);
    let push = eventually(10, "the ERP push", || async { srv.erp.pushes().pop() }).await;
    let ar = results(&push);
    assert!(
        ar.contains("spf=fail smtp.mailfrom=alice@client.test"),
        "{ar}"
    );
    assert!(ar.contains("dkim=pass header.d=client.test"), "{ar}");
    assert!(ar.contains("dmarc=pass (p=reject)"), "{ar}");
    srv.shutdown().await;
}

#[tokio::test]
async fn forged_authentication_results_claiming_our_id_are_removed() {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_FAIL);
    let raw = format!(
        "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ceo@client.test;\r\n dkim=pass header.d=client.test; dmarc=pass\r\nAuthentication-Results: relay.other.test; spf=pass\r\nX-Mxgate-Auth: spf=pass dkim=pass dmarc=pass\r\n{}",
        message("alice@client.test", "forged")
    );
    let push = deliver(&srv, "alice@client.test", &raw).await;
    let ar = results(&push); // asserts there is exactly one claiming mx.example.test
    assert!(ar.contains("spf=fail"), "{ar}");
    let f = fields(&push);
    let others: Vec<_> = f
        .iter()
        .filter(|(n, _)| n == "Authentication-Results")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(others.len(), 2, "{others:?}");
    assert_eq!(others[1], "relay.other.test; spf=pass");
    let mxgate_auth: Vec<_> = f.iter().filter(|(n, _)| n == "X-Mxgate-Auth").collect();
    assert_eq!(mxgate_auth.len(), 1, "{mxgate_auth:?}");
    assert!(
        erp_auth(&push).starts_with("spf=fail"),
        "{}",
        erp_auth(&push)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn verification_answers_from_cache_for_a_known_sender() {
    let srv = start().await;
    srv.dns.txt("client.test", SPF_PASS);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=reject");
    deliver(
        &srv,
        "alice@client.test",
        &message("alice@client.test", "c1"),
    )
    .await;
    let after_first = srv.dns.queries();
    send(
        &srv,
        "client.test",
        "alice@client.test",
        &message("alice@client.test", "c2"),
    )
    .await
    .expect_code(250);
    assert_eq!(
        srv.dns.queries(),
        after_first,
        "second message asked DNS again"
    );
    srv.shutdown().await;
}

/// mail-auth caches the DMARC records it parses, not the names that have none; the DMARC
/// check records those (`_dmarc.test.` for every sender under `test`) for the negative
/// answer's TTL in the same cache, so the tree walk stops asking hickory on every message.
#[tokio::test]
async fn dmarc_walk_names_without_a_record_are_cached_as_absent() {
    use mail_auth::{DnsError, Error, ResolverCache, Txt};
    let srv = start().await;
    srv.dns.txt("client.test", SPF_PASS);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=none");
    srv.dns.txt("nodmarc.test", SPF_PASS);
    let dns = mxgate::dns::Dns::from_config(&srv.config.dns).expect("resolver");
    let verifier =
        mxgate::auth::Verifier::new(&srv.config, dns.clone(), mxgate::metrics::Metrics::new());
    let verify = |from: &'static str| {
        let verifier = &verifier;
        async move {
            let sender = mxgate::envelope::ReversePath::Address(
                mxgate::envelope::Address::parse(from).expect("address"),
            );
            let raw = message(from, "walk");
            verifier
                .verify(
                    "127.0.0.1".parse().expect("ip"),
                    "client.test",
                    &sender,
                    raw.as_bytes(),
                )
                .await
                .dmarc
                .expect("dmarc on")
        }
    };
    let absent = |name: &str| {
        matches!(
            dns.caches().txt.get(name),
            Some(Txt::Error(Error::Dns(DnsError::RecordNotFound(_))))
        )
    };

    let first = verify("alice@nodmarc.test").await;
    assert_eq!(first.result, mxgate::auth::AuthResult::None, "{first:?}");
    eventually(10, "both walk names cached as absent", || async {
        (absent("_dmarc.nodmarc.test.") && absent("_dmarc.test.")).then_some(())
    })
    .await;
    // The author domain's record stays the record; only the level below it is absent.
    let with_record = verify("alice@client.test").await;
    assert_eq!(
        with_record.result,
        mxgate::auth::AuthResult::Pass,
        "{with_record:?}"
    );
    assert!(matches!(
        dns.caches().txt.get("_dmarc.client.test."),
        Some(Txt::Dmarc(_))
    ));
    // Answered from the cache now, with the same verdict as from DNS.
    let asked = srv.dns.queries();
    let again = verify("bob@nodmarc.test").await;
    assert_eq!(
        (again.result, again.policy_known),
        (first.result, first.policy_known)
    );
    assert_eq!(srv.dns.queries(), asked, "the second walk asked DNS");
    srv.shutdown().await;
}

// ---------------------------------------------------------------- CLI: dkim keygen, dns-check

/// Runs the real binary; returns (exit success, stdout, stderr).
async fn mxgate(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(args)
        .output()
        .await
        .expect("run mxgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Publishes the record of a `... publish: NAME. IN TYPE VALUE` line in `dns`.
fn publish(dns: &DnsServer, line: &str) {
    let rec = line.split("publish: ").nth(1).expect("a record to publish");
    let mut parts = rec.splitn(4, ' ');
    let (name, class, kind, value) = (
        parts.next().expect("name"),
        parts.next().expect("class"),
        parts.next().expect("type"),
        parts.next().expect("value"),
    );
    assert_eq!(class, "IN", "{line}");
    match kind {
        "MX" => {
            let (pref, host) = value.split_once(' ').expect("MX value");
            dns.mx(name, pref.parse().expect("preference"), host);
        }
        "TXT" => {
            // One or more quoted character-strings, joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
            let text: String = value.split('"').skip(1).step_by(2).collect();
            dns.txt(name, &text);
        }
        other => panic!("unexpected record type {other} in {line}"),
    }
}

#[tokio::test]
async fn dkim_keygen_and_dns_check_round_trip_through_dns() {
    let dns = DnsServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "{}[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"s1\"\nalgorithm = \"ed25519\"\n",
        dns.config_toml()
    );
    let cfg = dir.path().join("mxgate.toml");
    std::fs::write(
        &cfg,
        common::base_toml(dir.path(), "http://127.0.0.1:9", &extra),
    )
    .expect("write config");
    let cfg = cfg.to_str().expect("utf-8 path");

    // keygen writes the key where [[dkim.keys]] expects it and prints the record.
    let (ok, out, err) = mxgate(&[
        "dkim",
        "keygen",
        "example.test",
        "--selector",
        "s1",
        "--config",
        cfg,
    ])
    .await;
    assert!(ok, "{out}{err}");
    let key_file = dir.path().join("data/dkim/example.test.s1.key");
    assert!(key_file.exists(), "{out}");
    assert!(
        out.contains("s1._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    let (ok, _, err) = mxgate(&[
        "dkim",
        "keygen",
        "example.test",
        "--selector",
        "s1",
        "--config",
        cfg,
    ])
    .await;
    assert!(
        !ok && err.contains("already exists"),
        "a published key is never replaced: {err}"
    );

    // Nothing published: every record FAILs, each line says what to publish, exit 1.
    dns.a("mx.example.test", "192.0.2.10".parse().expect("ip"));
    let (ok, out, err) = mxgate(&["dns-check", "example.test", "--config", cfg]).await;
    assert!(!ok, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, record) in lines.iter().zip(["MX", "SPF", "DKIM", "DMARC"]) {
        assert!(line.starts_with(&format!("FAIL {record:<5} ")), "{out}");
        assert!(line.contains(" publish: "), "{out}");
    }
    assert!(
        lines[0].ends_with("publish: example.test. IN MX 10 mx.example.test."),
        "{out}"
    );
    assert!(
        lines[1].ends_with("publish: example.test. IN TXT \"v=spf1 a:mx.example.test ~all\""),
        "{out}"
    );
    assert!(lines[3].contains("publish: _dmarc.example.test. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test\""), "{out}");

    // Publish exactly what it asked for: all OK, exit 0.
    for l in &lines {
        publish(&dns, l);
    }
    let (ok, out, err) = mxgate(&["dns-check", "example.test", "--config", cfg]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK   ")).count(),
        4,
        "{out}"
    );
}

#[tokio::test]
async fn dns_check_fixes_a_wrong_spf_record_in_place_and_warns_on_monitoring_only_dmarc() {
    let dns = DnsServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("mxgate.toml");
    std::fs::write(
        &cfg,
        common::base_toml(dir.path(), "http://127.0.0.1:9", &dns.config_toml()),
    )
    .expect("write config");
    let cfg = cfg.to_str().expect("utf-8 path");
    dns.a("mx.example.test", "192.0.2.10".parse().expect("ip"));
    dns.mx("example.test", 10, "mx.example.test");
    dns.txt("example.test", "v=spf1 ip4:198.51.100.7 -all");
    dns.txt(
        "_dmarc.example.test",
        "v=DMARC1; p=none; rua=mailto:r@example.test",
    );
    let (ok, out, _) = mxgate(&["dns-check", "example.test", "--config", cfg]).await;
    assert!(!ok, "{out}");
    let line = |r: &str| {
        out.lines()
            .find(|l| l[5..].starts_with(r))
            .unwrap_or_else(|| panic!("no {r} line: {out}"))
            .to_string()
    };
    assert!(line("MX").starts_with("OK"), "{out}");
    let spf = line("SPF");
    assert!(
        spf.starts_with("FAIL") && spf.contains("does not cover mx.example.test"),
        "{out}"
    );
    assert!(
        spf.ends_with(
            "publish: example.test. IN TXT \"v=spf1 ip4:198.51.100.7 a:mx.example.test -all\""
        ),
        "{out}"
    );
    assert!(line("DKIM").starts_with("WARN"), "no key configured: {out}");
    assert!(
        line("DMARC").starts_with("WARN") && line("DMARC").contains("p=none"),
        "{out}"
    );

    // The suggested SPF record fixes it; WARNs alone do not fail the check.
    dns.remove("example.test");
    dns.mx("example.test", 10, "mx.example.test");
    publish(&dns, &spf);
    let (ok, out, _) = mxgate(&["dns-check", "example.test", "--config", cfg]).await;
    assert!(ok, "{out}");
    assert!(line_of(&out, "SPF").starts_with("OK"), "{out}");
}

fn line_of<'a>(out: &'a str, record: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(5..).is_some_and(|r| r.starts_with(record)))
        .unwrap_or_default()
}

#[tokio::test]
async fn submitted_mail_is_not_verified() {
    let srv = TestServer::start(&common::submit::user_toml(&["example.test"])).await;
    // A DMARC reject policy that inbound mail from this client would fail.
    srv.dns.txt("example.test", SPF_FAIL);
    srv.dns.txt("_dmarc.example.test", "v=DMARC1; p=reject");
    let sent = common::submit::python_send(
        srv.addr(Listener::Submission),
        false,
        "s3cret",
        &[
            ("From", "Shop <odoo@example.test>"),
            ("To", "sales@example.test"),
            ("Subject", "internal"),
        ],
        "From the ERP itself.",
    )
    .await;
    assert!(sent.ok, "{}", sent.output);
    let push = eventually(10, "the ERP push", || async { srv.erp.pushes().pop() }).await;
    assert_eq!(push.header("x-mxgate-auth"), None);
    assert!(
        !fields(&push)
            .iter()
            .any(|(n, _)| n == "Authentication-Results" || n == "X-Mxgate-Auth"),
        "{:?}",
        fields(&push)
    );
    assert_eq!(srv.metric(AUTH_RESULTS, &[]).await.unwrap_or(0.0), 0.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn an_arc_sealed_forward_is_reported_as_arc_pass() {
    use mail_auth::arc::ArcSealer;
    use mail_auth::{AuthenticatedMessage, AuthenticationResults};
    let author = TestKey::new(DkimAlgorithm::Ed25519);
    let sealer = TestKey::new(DkimAlgorithm::Rsa);
    let srv = start().await;
    srv.dns.txt("client.test", SPF_FAIL);
    srv.dns.txt("s1._domainkey.client.test", &author.record);
    srv.dns.txt("arc._domainkey.forwarder.test", &sealer.record);
    srv.dns.txt("_dmarc.client.test", "v=DMARC1; p=none");
    let original = author.sign(
        "client.test",
        "s1",
        &message("alice@client.test", "list"),
        None,
    );
    // A mailing list at forwarder.test checks the message, tags the subject (breaking the
    // author's DKIM signature) and seals what it saw with ARC (RFC 8617 §5.1).
    let resolver = mxgate::dns::Dns::from_config(&srv.config.dns).expect("resolver");
    let seen = AuthenticatedMessage::parse(original.as_bytes()).expect("parse");
    let dkim = resolver.authenticator().verify_dkim(&seen).await;
    let arc = resolver.authenticator().verify_arc(&seen).await;
    let list_results =
        AuthenticationResults::new("forwarder.test").with_dkim_results(&dkim, "client.test");
    let tagged = original.replace("Subject: list", "Subject: [list] list");
    let msg = AuthenticatedMessage::parse(tagged.as_bytes()).expect("parse");
    let seal = ArcSealer::from_key(keys::load(&sealer.path, sealer.alg).expect("key").signing)
        .domain("forwarder.test")
        .selector("arc")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(&msg, &list_results, &arc)
        .expect("seal");
    let forwarded = format!("{}{}{tagged}", seal.to_header(), list_results.to_header());

    let r = send(&srv, "forwarder.test", "alice@client.test", &forwarded).await;
    r.expect_code(250);
    let push = eventually(10, "the ERP push", || async { srv.erp.pushes().pop() }).await;
    let ar = results(&push);
    assert!(ar.contains("dkim=fail"), "{ar}");
    assert!(ar.contains("arc=pass"), "{ar}");
    assert!(erp_auth(&push).contains("arc=pass"), "{}", erp_auth(&push));
    srv.shutdown().await;
}
