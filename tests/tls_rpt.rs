//! TLS-RPT (RFC 8460), end to end: a day of direct-MX traffic to domains with and without
//! MTA-STS policies, the server's clock stepped past midnight, and the daily reports
//! received by an `https:` rua (a real HTTPS server with a test CA) and a `mailto:` rua
//! (relayed to a sink MX), each decompressed and its JSON counts checked. Mailed reports
//! carry a DKIM signature of the reporting domain (RFC 8460 §3), verified here against the
//! key the in-process DNS serves; without a key the mailto: rua gets nothing.

mod common;

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use common::policy_host::PolicyHost;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, user_toml};
use common::test_ca::TestCa;
use common::{Erp, Listener, TestServer, eventually};
use mxgate::queue::RcptState;
use serde_json::Value;

fn gunzip(gz: &[u8]) -> Value {
    let mut json = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut json)
        .expect("gzip");
    serde_json::from_str(&json).expect("JSON")
}

/// The report of the `application/tlsrpt+gzip` part of a mailed report.
fn attachment(message: &str) -> Value {
    let part = message
        .split("Content-Type: application/tlsrpt+gzip")
        .nth(1)
        .expect("tlsrpt part");
    let body = part.split("\r\n\r\n").nth(1).expect("part body");
    let b64: String = body
        .split("\r\n--")
        .next()
        .expect("until the boundary")
        .split_whitespace()
        .collect();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    gunzip(&gz)
}

/// A `[[dkim.keys]]` entry for example.test (parent of `server.hostname`
/// mx.example.test, the reports' From domain) and the TXT record of its public key.
fn dkim_key(dir: &std::path::Path) -> (String, String) {
    let path = dir.join("example.test.rpt.key");
    let key = mxgate::auth::keys::generate_to(&path, mxgate::config::DkimAlgorithm::Ed25519)
        .expect("dkim key");
    let toml = format!(
        "[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"rpt\"\n\
         algorithm = \"ed25519\"\nkey_file = \"{}\"\n",
        path.display()
    );
    (toml, key.dns_record())
}

/// Asserts that `data` (a mailed report, as the sink got it) has a DKIM signature of
/// example.test that the project's verifier passes, the key looked up in the test DNS.
async fn assert_signed_by_example_test(srv: &TestServer, data: &str) {
    assert!(data.starts_with("DKIM-Signature: "), "{data}");
    let dns = mxgate::dns::Dns::from_config(&srv.config.dns).expect("resolver");
    let verifier = mxgate::auth::Verifier::new(&srv.config, dns, mxgate::metrics::Metrics::new());
    let verdict = verifier
        .verify(
            "127.0.0.1".parse().expect("ip"),
            "mx.example.test",
            &mxgate::envelope::ReversePath::Null,
            data.as_bytes(),
        )
        .await;
    assert!(
        verdict
            .dkim
            .iter()
            .any(|d| d.result == mxgate::auth::AuthResult::Pass
                && d.domain == "example.test"
                && d.selector == "rpt"),
        "{:?}\n{data}",
        verdict.dkim
    );
}

/// The entry of `policy_type` in a report.
fn policy<'a>(report: &'a Value, policy_type: &str) -> &'a Value {
    report["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["policy"]["policy-type"] == policy_type)
        .unwrap_or_else(|| panic!("no {policy_type} entry in {report}"))
}

/// A temp dir, a test CA, a STARTTLS MX sink and an https rua (an Erp) with the CA's cert.
async fn mx_and_https_rua() -> (tempfile::TempDir, TestCa, Sink, Erp) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "rpt");
    let mx = Sink::start(SinkOptions {
        tls: SinkTls::StartTls,
        auth: None,
    })
    .await;
    let rua = Erp::start_tls(ca.acceptor()).await;
    (dir, ca, mx, rua)
}

/// Waits for `rua`'s first report POST (`what` names it) and checks it counts the one
/// successful session to the domain without a policy.
async fn posted_one_plain_session(rua: &Erp, what: &str) {
    let posts = eventually(20, what, || async {
        let p = rua.pushes();
        (!p.is_empty()).then_some(p)
    })
    .await;
    let report = gunzip(&posts[0].body);
    let none = policy(&report, "no-policy-found");
    assert_eq!(none["summary"]["total-successful-session-count"], 1);
}

/// Waits until the `T/` counters of `day` are gone: the domain-day was reported for good.
async fn day_counters_dropped(srv: &TestServer, day: u64) {
    let store = srv.running().stats.store().clone();
    eventually(20, "the reported day's counters dropped", || async {
        let mut left = 0;
        store
            .scan(b"T/", &mxgate::db::prefix_end(b"T/"), |k, _| {
                if k.get(2..10) == Some(&day.to_be_bytes()[..]) {
                    left += 1;
                }
            })
            .expect("scan");
        (left == 0).then_some(())
    })
    .await;
}

/// A server (config `extra` added) relays one message to `a@plain.test` at `mx`, whose
/// `_smtp._tls` record names `rua`; then one test-clock day passes. Returns the server and
/// the day the session was counted on.
async fn one_day_to_plain_test(
    extra: &str,
    mx: &Sink,
    ca: &TestCa,
    rua: &str,
    subject: &str,
) -> (TestServer, u64) {
    let toml = format!(
        "{}{extra}[relay]\ndirect_mx = true\nmx_port = {}\n[relay.mta_sts]\nca_file = \"{}\"\n\
         [relay.tls_rpt]\ncheck_interval = \"100ms\"\n",
        user_toml(&["example.test"]),
        mx.addr.port(),
        ca.pem_path.display()
    );
    let srv = TestServer::start(&toml).await;
    let local = "127.0.0.1".parse().expect("ip");
    for d in ["plain.test", "reports.test"] {
        srv.dns.mx(d, 10, &format!("mx.{d}"));
        srv.dns.a(&format!("mx.{d}"), local);
    }
    srv.dns
        .txt("_smtp._tls.plain.test", &format!("v=TLSRPTv1; rua={rua}"));
    let body = common::messages::raw("odoo@example.test", "a@plain.test", subject);
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &["a@plain.test"],
        &body,
    )
    .await
    .expect("submitted");
    eventually(20, "the message at the MX", || async {
        (!mx.received().is_empty()).then_some(())
    })
    .await;
    let day = srv.running().clock.now_ms() / 86_400_000;
    srv.running().clock.advance(Duration::from_secs(86_400));
    (srv, day)
}

#[tokio::test]
async fn a_day_of_traffic_is_reported_to_an_https_and_a_mailto_rua() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "rpt");
    // One MX sink for every domain; its certificate names every MX host but mx.bad.test.
    let mx = Sink::start_with_certificate(
        SinkOptions {
            tls: SinkTls::StartTls,
            auth: None,
        },
        ca.acceptor_for(&["mx.good.test", "mx.plain.test", "mx.reports.test"]),
    )
    .await;
    let policies =
        PolicyHost::start(ca.acceptor_for(&["mta-sts.good.test", "mta-sts.bad.test"])).await;
    policies.set_policy(
        "good.test",
        "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n",
    );
    policies.set_policy(
        "bad.test",
        "version: STSv1\nmode: testing\nmx: mx.bad.test\nmax_age: 86400\n",
    );
    let rua = Erp::start_tls(ca.acceptor()).await;
    let (dkim, dkim_record) = dkim_key(dir.path());
    // Every message on a session of its own: TLS-RPT counts sessions.
    let toml = format!(
        "{}{dkim}[relay]\ndirect_mx = true\nmx_port = {}\nconnection_idle = \"0s\"\n\
         [relay.mta_sts]\npolicy_port = {}\nca_file = \"{}\"\nfetch_timeout = \"5s\"\n\
         [relay.tls_rpt]\ncheck_interval = \"100ms\"\norganization = \"mxgate test\"\n",
        user_toml(&["example.test"]),
        mx.addr.port(),
        policies.addr.port(),
        ca.pem_path.display()
    );
    let srv = TestServer::start(&toml).await;
    srv.dns.txt("rpt._domainkey.example.test", &dkim_record);
    let local = "127.0.0.1".parse().expect("ip");
    for d in ["good.test", "bad.test", "plain.test", "reports.test"] {
        srv.dns.mx(d, 10, &format!("mx.{d}"));
        srv.dns.a(&format!("mx.{d}"), local);
        srv.dns.a(&format!("mta-sts.{d}"), local);
    }
    srv.dns.txt("_mta-sts.good.test", "v=STSv1; id=1;");
    srv.dns.txt("_mta-sts.bad.test", "v=STSv1; id=1;");
    let https = format!("https://{}/tlsrpt", rua.addr);
    srv.dns
        .txt("_smtp._tls.good.test", &format!("v=TLSRPTv1; rua={https}"));
    srv.dns
        .txt("_smtp._tls.plain.test", &format!("v=TLSRPTv1; rua={https}"));
    srv.dns.txt(
        "_smtp._tls.bad.test",
        "v=TLSRPTv1; rua=mailto:tls-reports@reports.test",
    );

    // The day: 3 verified sessions to good.test, 2 to bad.test whose certificate does not
    // name its MX (testing: delivered, reported), 1 to plain.test (no policy).
    let traffic = [
        "a@good.test",
        "b@good.test",
        "c@good.test",
        "d@bad.test",
        "e@bad.test",
        "f@plain.test",
    ];
    for (i, to) in traffic.iter().enumerate() {
        let body = common::messages::raw("odoo@example.test", to, &format!("m{i}"));
        submit(
            srv.addr(Listener::Submission),
            "odoo@example.test",
            &[to],
            &body,
        )
        .await
        .expect("submitted");
    }
    eventually(20, "the day's traffic at the MX", || async {
        (mx.received().len() >= traffic.len()).then_some(())
    })
    .await;
    assert!(
        rua.pushes().is_empty(),
        "nothing is reported before the day is over"
    );

    let day = srv.running().clock.now_ms() / 86_400_000;
    srv.running().clock.advance(Duration::from_secs(86_400));

    let posts = eventually(20, "two reports at the https rua", || async {
        let p = rua.pushes();
        (p.len() >= 2).then_some(p)
    })
    .await;
    let reports: Vec<Value> = posts
        .iter()
        .map(|p| {
            assert_eq!(p.path, "/tlsrpt");
            assert_eq!(p.header("content-type"), Some("application/tlsrpt+gzip"));
            gunzip(&p.body)
        })
        .collect();
    let good = reports
        .iter()
        .find(|r| r["policies"][0]["policy"]["policy-domain"] == "good.test")
        .expect("good.test report");
    assert_eq!(good["organization-name"], "mxgate test");
    assert_eq!(good["contact-info"], "postmaster@mx.example.test");
    let sts = policy(good, "sts");
    assert_eq!(sts["policy"]["mx-host"][0], "mx.good.test");
    assert_eq!(sts["summary"]["total-successful-session-count"], 3);
    assert_eq!(sts["summary"]["total-failure-session-count"], 0);
    let plain = reports
        .iter()
        .find(|r| r["policies"][0]["policy"]["policy-domain"] == "plain.test")
        .expect("plain.test report");
    let none = policy(plain, "no-policy-found");
    assert_eq!(none["summary"]["total-successful-session-count"], 1);

    let mail = eventually(20, "the mailed report at reports.test's MX", || async {
        mx.received()
            .into_iter()
            .find(|m| m.rcpts == ["tls-reports@reports.test"])
    })
    .await;
    assert_eq!(mail.mail_from, "", "reports go from the null sender");
    assert!(
        mail.data
            .contains("Content-Type: multipart/report; report-type=\"tlsrpt\""),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("Subject: Report Domain: bad.test Submitter: mx.example.test")
    );
    assert!(mail.data.contains("TLS-Report-Domain: bad.test"));
    assert_signed_by_example_test(&srv, &mail.data).await;
    let report = attachment(&mail.data);
    let sts = policy(&report, "sts");
    assert_eq!(sts["summary"]["total-successful-session-count"], 0);
    assert_eq!(sts["summary"]["total-failure-session-count"], 2);
    let detail = &sts["failure-details"][0];
    assert_eq!(detail["result-type"], "certificate-host-mismatch");
    assert_eq!(detail["receiving-mx-hostname"], "mx.bad.test");
    assert_eq!(detail["failed-session-count"], 2);

    // Reported once: the day's counters are gone (the next rounds find nothing of it).
    day_counters_dropped(&srv, day).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_report_an_https_rua_missed_is_posted_again_and_mailed_only_once() {
    let (dir, ca, mx, rua) = mx_and_https_rua().await;
    rua.answer(503);
    let (dkim, _) = dkim_key(dir.path());
    let (srv, day) = one_day_to_plain_test(
        &dkim,
        &mx,
        &ca,
        &format!("https://{}/r,mailto:tls@reports.test", rua.addr),
        "once",
    )
    .await;

    // The round that mailed the report met a 503 at the https rua (listed first).
    let to_rua = |m: &common::sink::Received| m.rcpts == ["tls@reports.test"];
    eventually(20, "the mailed report", || async {
        mx.received().into_iter().find(to_rua)
    })
    .await;
    assert!(rua.pushes().is_empty());
    rua.answer(200);
    posted_one_plain_session(&rua, "the report posted on a later round").await;

    day_counters_dropped(&srv, day).await;
    // Mailed once: one at the MX, none waiting in the queue.
    let queue = srv.running().queue.clone();
    let waiting = queue
        .list(None, 1000)
        .into_iter()
        .filter(|m| {
            m.recipients.iter().any(|r| {
                r.address == "tls@reports.test"
                    && matches!(r.state, RcptState::Queued | RcptState::Deferred)
            })
        })
        .count();
    assert_eq!(waiting, 0);
    assert_eq!(mx.received().into_iter().filter(to_rua).count(), 1);
    assert_eq!(rua.pushes().len(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn without_a_dkim_key_the_mailto_rua_is_skipped_and_the_https_rua_still_served() {
    let (_dir, ca, mx, rua) = mx_and_https_rua().await;
    // No [[dkim.keys]]: nothing can sign for mx.example.test.
    // The mailto: rua listed first: it is passed over before the https: one is served.
    let (srv, day) = one_day_to_plain_test(
        "",
        &mx,
        &ca,
        &format!("mailto:tls@reports.test,https://{}/r", rua.addr),
        "unsigned",
    )
    .await;

    posted_one_plain_session(&rua, "the report at the https rua").await;

    // The domain-day is done (counters dropped) without any mail to the mailto: rua.
    day_counters_dropped(&srv, day).await;
    let queued = srv
        .running()
        .queue
        .list(None, 1000)
        .into_iter()
        .filter(|m| m.recipients.iter().any(|r| r.address == "tls@reports.test"))
        .count();
    assert_eq!(queued, 0, "no unsigned report queued");
    assert!(
        mx.received()
            .iter()
            .all(|m| m.rcpts != ["tls@reports.test"]),
        "no report mailed"
    );
    assert_eq!(mx.received().len(), 1);
    srv.shutdown().await;
}

/// `mxgate serve` logs what `check-config` warns about: with no DKIM key for
/// `server.hostname`, that mailed reports will not be sent.
#[tokio::test]
async fn serve_logs_at_start_that_mailto_ruas_get_no_report_without_a_dkim_key() {
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mxgate.toml");
    let dns = common::dns::DnsServer::start().await;
    let toml = common::base_toml(dir.path(), &erp.url(), &dns.config_toml());
    std::fs::write(&config, toml).expect("write config");
    let mut proc = common::process::spawn_server(&config);
    let log = proc.log();
    proc.sigterm();
    assert_eq!(proc.wait_exit(30), Some(0));
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("relay.tls_rpt"))
        .unwrap_or_else(|| panic!("no TLS-RPT warning in the log:\n{log}"));
    assert!(
        line.contains("no [[dkim.keys]] entry for mx.example.test"),
        "{line}"
    );
    assert!(line.contains("mailto:"), "{line}");
}
