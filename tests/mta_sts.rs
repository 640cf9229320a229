//! MTA-STS (RFC 8461) for direct-MX delivery, end to end: the `_mta-sts` TXT record from
//! the in-process DNS server, the policy from a real HTTPS server whose certificate a test
//! CA signed, and a sink MX whose STARTTLS certificate names (or does not name) the MX host.

mod common;

use std::path::Path;

use common::policy_host::PolicyHost;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::submit::{submit, submit_requiretls, user_toml};
use common::test_ca::TestCa;
use common::{Listener, TestServer, eventually};
use mxgate::queue::{QueuedMessage, RcptState};

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";
const TESTING: &str = "version: STSv1\nmode: testing\nmx: *.remote.test\nmax_age: 86400\n";

/// A server delivering directly to MX hosts on `mx`'s port, MTA-STS policies fetched from
/// `host` (trusting `ca`), and `remote.test`'s DNS: MX `mx.remote.test`, its policy host,
/// the `_mta-sts` record with id `1`.
async fn start(mx: &Sink, host: &PolicyHost, ca: &TestCa, extra: &str) -> TestServer {
    let toml = format!(
        "{}[relay]\ndirect_mx = true\nmx_port = {}\n[relay.mta_sts]\npolicy_port = {}\n\
         ca_file = \"{}\"\nfetch_timeout = \"5s\"\n{extra}",
        user_toml(&["example.test"]),
        mx.addr.port(),
        host.addr.port(),
        ca.pem_path.display()
    );
    let srv = TestServer::start(&toml).await;
    let local = "127.0.0.1".parse().expect("ip");
    srv.dns.mx("remote.test", 10, "mx.remote.test");
    srv.dns.a("mx.remote.test", local);
    srv.dns.a("mta-sts.remote.test", local);
    srv.dns.txt("_mta-sts.remote.test", "v=STSv1; id=1;");
    srv
}

/// A sink MX whose STARTTLS certificate, signed by `ca`, names `names`.
async fn mx_with_certificate(ca: &TestCa, names: &[&str]) -> Sink {
    let opts = SinkOptions {
        tls: SinkTls::StartTls,
        auth: None,
    };
    Sink::start_with_certificate(opts, ca.acceptor_for(names)).await
}

async fn policy_host(ca: &TestCa, policy: &str) -> PolicyHost {
    let host = PolicyHost::start(ca.acceptor_for(&["mta-sts.remote.test"])).await;
    host.set_policy("remote.test", policy);
    host
}

async fn send(srv: &TestServer, to: &str, subject: &str) {
    let body = common::messages::raw("odoo@example.test", to, subject);
    submit(
        srv.addr(Listener::Submission),
        "odoo@example.test",
        &[to],
        &body,
    )
    .await
    .expect("submitted");
}

async fn wait_received(sink: &Sink, n: usize) -> Vec<common::sink::Received> {
    eventually(20, &format!("{n} message(s) at the MX"), || async {
        let r = sink.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

/// The message to `to`, once its recipient was deferred `attempts` times.
async fn deferred(srv: &TestServer, to: &str, attempts: u32) -> QueuedMessage {
    let queue = srv.running().queue.clone();
    eventually(20, &format!("{to} deferred {attempts} times"), || {
        let q = queue.clone();
        async move {
            q.list(None, 1000).into_iter().find(|m| {
                m.recipients[0].address == to
                    && m.recipients[0].state == RcptState::Deferred
                    && m.recipients[0].attempts >= attempts
            })
        }
    })
    .await
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn ca(dir: &Path) -> TestCa {
    TestCa::new(dir, "sts")
}

#[tokio::test]
async fn an_enforced_policy_delivers_over_tls_verified_for_the_mx_host_name() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["mx.remote.test"]).await;
    let host = policy_host(&ca, ENFORCE).await;
    let srv = start(&mx, &host, &ca, "").await;
    send(&srv, "ann@remote.test", "verified").await;
    let got = wait_received(&mx, 1).await;
    assert_eq!(got[0].rcpts, ["ann@remote.test"]);
    assert!(got[0].tls, "delivered over TLS");
    assert_eq!(host.requests(), 1, "the policy was fetched");
    srv.shutdown().await;
}

#[tokio::test]
async fn an_enforced_policy_defers_on_a_certificate_for_another_name_and_never_sends_in_plaintext()
{
    let dir = tempdir();
    let ca = ca(dir.path());
    // Trusted CA, wrong name: certificate-host-mismatch.
    let mx = mx_with_certificate(&ca, &["wrong.remote.test"]).await;
    let host = policy_host(&ca, ENFORCE).await;
    let srv = start(&mx, &host, &ca, "").await;
    send(&srv, "bob@remote.test", "mismatch").await;
    let m = deferred(&srv, "bob@remote.test", 2).await;
    let reason = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(
        reason.contains("MTA-STS policy of remote.test (enforce)")
            && reason.contains("certificate-host-mismatch"),
        "{reason}"
    );
    assert_eq!(mx.transactions(), 0, "no MAIL on any session: {reason}");
    assert!(mx.received().is_empty());
    let labels = [("policy", "sts"), ("result", "certificate-host-mismatch")];
    eventually(20, "the refused sessions in the metrics", || async {
        let n = srv
            .metric("mxgate_outbound_tls_sessions_total", &labels)
            .await;
        n.filter(|n| *n >= 2.0)
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn an_enforced_policy_defers_when_the_mx_is_not_in_the_policy() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["backup.elsewhere.test"]).await;
    let host = policy_host(&ca, ENFORCE).await;
    let srv = start(&mx, &host, &ca, "").await;
    // The domain's MX record names a host the policy does not (a forged MX answer).
    srv.dns.remove("remote.test");
    srv.dns.mx("remote.test", 10, "backup.elsewhere.test");
    srv.dns
        .a("backup.elsewhere.test", "127.0.0.1".parse().expect("ip"));
    send(&srv, "cy@remote.test", "unlisted").await;
    let m = deferred(&srv, "cy@remote.test", 1).await;
    let reason = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(
        reason.contains("no MX host matches the policy")
            && reason.contains("backup.elsewhere.test"),
        "{reason}"
    );
    assert_eq!(
        mx.connections(),
        0,
        "no session to an MX outside the policy"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_testing_policy_delivers_despite_a_certificate_for_another_name() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["wrong.remote.test"]).await;
    let host = policy_host(&ca, TESTING).await;
    let srv = start(&mx, &host, &ca, "").await;
    send(&srv, "dee@remote.test", "testing").await;
    let got = wait_received(&mx, 1).await;
    assert!(got[0].tls);
    assert_eq!(host.requests(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn the_tls_policy_override_enforces_a_testing_policy_and_none_ignores_an_enforced_one() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["wrong.remote.test"]).await;
    let host = policy_host(&ca, TESTING).await;
    let srv = start(
        &mx,
        &host,
        &ca,
        "[relay.tls_policy]\n\"remote.test\" = \"enforce\"\n\"plain.test\" = \"none\"\n",
    )
    .await;
    send(&srv, "eve@remote.test", "forced").await;
    let m = deferred(&srv, "eve@remote.test", 1).await;
    let reason = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reason.contains("certificate-host-mismatch"), "{reason}");
    // plain.test publishes an enforced policy its MX fails, but the override says none.
    srv.dns.mx("plain.test", 10, "mx.plain.test");
    srv.dns.a("mx.plain.test", "127.0.0.1".parse().expect("ip"));
    srv.dns.txt("_mta-sts.plain.test", "v=STSv1; id=1;");
    send(&srv, "fay@plain.test", "ignored").await;
    let got = wait_received(&mx, 1).await;
    assert_eq!(got[0].rcpts, ["fay@plain.test"]);
    assert_eq!(
        host.requests(),
        1,
        "plain.test's policy is not even fetched"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_policy_is_cached_across_a_restart_and_fetched_again_when_the_id_changes() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["mx.remote.test", "mx2.remote.test"]).await;
    let host = policy_host(&ca, ENFORCE).await;
    let mut srv = start(&mx, &host, &ca, "").await;
    send(&srv, "a@remote.test", "first").await;
    wait_received(&mx, 1).await;
    assert_eq!(host.requests(), 1);

    srv.restart().await;
    send(&srv, "b@remote.test", "after-restart").await;
    wait_received(&mx, 2).await;
    assert_eq!(
        host.requests(),
        1,
        "the stored policy is used after a restart"
    );

    // A new policy under a new id, naming the new MX only. (Restarted again so that the
    // resolver's cache, which keeps the old TXT answer for its TTL, asks afresh.)
    host.set_policy(
        "remote.test",
        "version: STSv1\nmode: enforce\nmx: mx2.remote.test\nmax_age: 86400\n",
    );
    srv.dns.remove("_mta-sts.remote.test");
    srv.dns.txt("_mta-sts.remote.test", "v=STSv1; id=2;");
    srv.dns.remove("remote.test");
    srv.dns.mx("remote.test", 10, "mx2.remote.test");
    srv.dns
        .a("mx2.remote.test", "127.0.0.1".parse().expect("ip"));
    srv.restart().await;
    send(&srv, "c@remote.test", "new-id").await;
    let got = wait_received(&mx, 3).await;
    assert_eq!(got[2].rcpts, ["c@remote.test"]);
    assert_eq!(host.requests(), 2, "a new id fetches the policy again");
    srv.shutdown().await;
}

#[tokio::test]
async fn an_announced_policy_that_cannot_be_fetched_delivers_as_without_one_unless_enforced_by_config()
 {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["wrong.remote.test"]).await;
    // The policy host answers 404 for remote.test: a fetch error, no policy cached.
    let host =
        PolicyHost::start(ca.acceptor_for(&["mta-sts.remote.test", "mta-sts.forced.test"])).await;
    let srv = start(
        &mx,
        &host,
        &ca,
        "[relay.tls_policy]\n\"forced.test\" = \"enforce\"\n",
    )
    .await;
    send(&srv, "gil@remote.test", "unfetchable").await;
    let got = wait_received(&mx, 1).await;
    assert_eq!(got[0].rcpts, ["gil@remote.test"]);
    let labels = [("policy", "sts"), ("result", "sts-policy-fetch-error")];
    eventually(20, "the fetch error in the metrics", || async {
        srv.metric("mxgate_outbound_tls_sessions_total", &labels)
            .await
    })
    .await;
    // The same failure under relay.tls_policy enforce: deferred, nothing sent.
    let local = "127.0.0.1".parse().expect("ip");
    srv.dns.mx("forced.test", 10, "mx.forced.test");
    srv.dns.a("mx.forced.test", local);
    srv.dns.a("mta-sts.forced.test", local);
    srv.dns.txt("_mta-sts.forced.test", "v=STSv1; id=1;");
    send(&srv, "hal@forced.test", "forced").await;
    let m = deferred(&srv, "hal@forced.test", 1).await;
    let reason = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(reason.contains("sts-policy-fetch-error"), "{reason}");
    assert_eq!(mx.received().len(), 1, "only the first message was sent");
    srv.shutdown().await;
}

/// RFC 8689 §4.2.1 for direct MX: REQUIRETLS mail goes to an MX host that an MTA-STS
/// policy (here `testing`) names, over TLS verified with the policy's trust; to a domain
/// whose MX answer is neither DNSSEC-validated nor backed by a policy it fails 5.7.30,
/// though the same host offers REQUIRETLS with a certificate valid for its name.
#[tokio::test]
async fn requiretls_mail_goes_only_to_an_mx_an_sts_policy_authorises() {
    let dir = tempdir();
    let ca = ca(dir.path());
    let mx = mx_with_certificate(&ca, &["mx.remote.test", "mx.nopolicy.test"]).await;
    mx.offer("REQUIRETLS");
    let host = policy_host(&ca, TESTING).await;
    let srv = start(&mx, &host, &ca, "").await;
    srv.dns.mx("nopolicy.test", 10, "mx.nopolicy.test");
    srv.dns
        .a("mx.nopolicy.test", "127.0.0.1".parse().expect("ip"));

    submit_requiretls(srv.addr(Listener::Submission), "ann@remote.test").await;
    let got = wait_received(&mx, 1).await;
    assert_eq!(got[0].rcpts, ["ann@remote.test"]);
    assert!(got[0].tls, "delivered over TLS");
    assert!(
        got[0].mail_line.ends_with(" REQUIRETLS"),
        "{}",
        got[0].mail_line
    );

    submit_requiretls(srv.addr(Listener::Submission), "bob@nopolicy.test").await;
    let queue = srv.running().queue.clone();
    let m = eventually(20, "bob@nopolicy.test bounced", || {
        let q = queue.clone();
        async move {
            q.list(None, 1000).into_iter().find(|m| {
                m.recipients[0].address == "bob@nopolicy.test"
                    && m.recipients[0].state == RcptState::Bounced
            })
        }
    })
    .await;
    let last = m.recipients[0].last_reply.clone().unwrap_or_default();
    assert!(last.starts_with("550 5.7.30"), "{last}");
    assert!(last.contains("not authenticated"), "{last}");
    assert_eq!(mx.transactions(), 1, "no MAIL for the refused recipient");
    srv.shutdown().await;
}
