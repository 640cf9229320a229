//! Spam filtering on the inbound MX (issue 16 item 1) against a real rspamd
//! ([`common::rspamd`]: the Debian package, offline config): each rspamd action through
//! the SMTP socket, per-domain modes, the fallbacks when rspamd is down or slow, metrics.
//!
//! The fixture's rules turn Subject words into rspamd actions (`spammy` → add header,
//! `rewrite me` → rewrite subject, `greylist me` → greylist, `try later` → soft reject);
//! GTUBE is rspamd's own.

mod common;

use common::rspamd::Rspamd;
use common::{Listener, SmtpReply, TestServer, eventually};
use mxgate::metrics::{INBOUND_MESSAGES, SPAM_RESULTS};
use mxgate::reply;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// `[spam]` for `url`, plus two more alias domains: `tagged.test` (`spam = "tag"`) and
/// `unscanned.test` (`spam = "off"`); `example.test` keeps the default, `enforce`.
fn spam_toml(url: &str, on_error: &str, timeout: &str) -> String {
    format!(
        r#"
[spam]
rspamd_url = "{url}"
on_error = "{on_error}"
timeout = "{timeout}"
[[domains]]
name = "tagged.test"
catchall = "crm"
spam = "tag"
[[domains]]
name = "unscanned.test"
catchall = "crm"
spam = "off"
"#
    )
}

async fn start(rspamd_url: &str, on_error: &str) -> TestServer {
    TestServer::start(&spam_toml(rspamd_url, on_error, "5s")).await
}

fn message(subject: &str, body: &str) -> String {
    common::message(subject, body)
}

fn expect_reply(got: &SmtpReply, want: &mxgate::reply::Reply) {
    assert_eq!(got.code, want.code, "{got}");
    assert!(got.text().contains(want.status), "{got}");
}

/// The body of the ERP push whose Subject contains `subject` (waits for it).
async fn pushed(srv: &TestServer, subject: &str) -> String {
    eventually(15, &format!("ERP push of {subject:?}"), || async {
        srv.erp
            .pushes()
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .find(|b| b.contains(subject))
    })
    .await
}

/// A header field's unfolded value in `raw`'s header section.
fn field(raw: &str, name: &str) -> Option<String> {
    let head = mxgate::message::header_section(raw.as_bytes());
    mxgate::message::find(head, name).map(|f| f.unfolded())
}

async fn spam_results(srv: &TestServer, action: &str) -> f64 {
    srv.metric(SPAM_RESULTS, &[("action", action)])
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn gtube_is_rejected_with_550_and_rspamds_message_through_a_real_smtp_client() {
    use mail_send::SmtpClientBuilder;
    use mail_send::mail_builder::MessageBuilder;
    let rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    let port = srv.addr(Listener::Inbound).port();
    let gtube = MessageBuilder::new()
        .from(("Spammer", "spammer@client.test"))
        .to(vec![("Sales", "sales@example.test")])
        .subject("GTUBE")
        .text_body(GTUBE);
    let err =
        SmtpClientBuilder::new_with_tls_connector("127.0.0.1", port, common::smtp::tls_connector())
            .implicit_tls(false)
            .helo_host("client.test")
            .connect_plain()
            .await
            .expect("connect")
            .send(gtube)
            .await
            .expect_err("GTUBE refused");
    let mail_send::Error::UnexpectedReply(r) = &err else {
        panic!("not an SMTP refusal: {err}");
    };
    assert_eq!(r.code, 550, "{err}");
    assert_eq!((r.esc[0], r.esc[1], r.esc[2]), (5, 7, 1), "{err}");
    assert_eq!(r.message, "Gtube pattern", "rspamd's smtp_message");
    let rejected = &[("result", "rejected"), ("reason", "spam")];
    assert_eq!(srv.metric(INBOUND_MESSAGES, rejected).await, Some(1.0));
    assert_eq!(spam_results(&srv, "reject").await, 1.0);
    // Nothing of it reached the ERP: a clean message sent after it is the only push.
    srv.send_inbound(
        "a@client.test",
        &["sales@example.test"],
        &message("after", "hi"),
    )
    .await
    .expect_code(250);
    pushed(&srv, "Subject: after").await;
    assert_eq!(srv.erp.pushes().len(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_clean_message_is_delivered_with_its_score_and_rspamd_got_envelope_and_auth_verdict() {
    let rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    // rspamd's own DNS leads nowhere: R_SPF_ALLOW and the host name can only come from
    // mxgate's request headers. (The resolver names 127.0.0.1 `localhost` itself, RFC 6761,
    // so iprev passes with that name.)
    srv.dns.txt("client.test", "v=spf1 ip4:127.0.0.1 -all");
    let forged = "X-Spam-Status: No, score=-100\r\nX-Spam-Score: -100\r\n";
    let body = format!("{forged}{}", message("clean", "Quotation attached."));
    let rcpts = ["sales@example.test", "support@example.test"];
    let r = srv.send_inbound("a@client.test", &rcpts, &body).await;
    r.expect_code(250);
    let queue_id = r.text().rsplit(' ').next().expect("queue id").to_string();
    let raw = pushed(&srv, "Subject: clean").await;
    let status = field(&raw, "X-Spam-Status").expect("X-Spam-Status");
    assert!(
        status.starts_with("No, score=0.00 required=15.00 action=no_action"),
        "{status}"
    );
    assert!(
        status.contains("R_SPF_ALLOW"),
        "the SPF verdict went to rspamd: {status}"
    );
    assert_eq!(
        field(&raw, "X-Spam-Score").as_deref(),
        Some("0.00"),
        "{raw}"
    );
    assert!(!raw.contains("-100"), "the sender's copies are gone: {raw}");
    // Fields rspamd asked for (milter add_headers): what it was told, and under which id.
    let spamd = field(&raw, "X-Spamd-Result").expect("rspamd's X-Spamd-Result");
    assert!(
        spamd.starts_with("default: False [0.00 / 15.00]"),
        "{spamd}"
    );
    let envelope = "from=a@client.test,rcpt=sales@example.test,rcpt=support@example.test,\
                    helo=client.test,ip=127.0.0.1,hostname=";
    assert!(spamd.contains(envelope), "{spamd}");
    // 127.0.0.1's verified name: whichever of /etc/hosts' names the resolver gives first
    // (`localhost`, or the container's own name on some machines), never `unknown`.
    let host = spamd
        .split_once("hostname=")
        .map(|(_, h)| h.split([']', ',']).next().unwrap_or(""))
        .unwrap_or("");
    assert!(!host.is_empty() && host != "unknown", "{spamd}");
    assert_eq!(field(&raw, "X-Rspamd-Queue-Id"), Some(queue_id), "{raw}");
    assert!(
        raw.starts_with("X-Mxgate-Auth: "),
        "the ERP's auth header stays first: {raw}"
    );
    assert_eq!(spam_results(&srv, "no_action").await, 1.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn add_header_and_rewrite_subject_are_delivered_tagged_as_spam() {
    let rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    for subject in ["spammy offer", "rewrite me"] {
        srv.send_inbound(
            "a@client.test",
            &["sales@example.test"],
            &message(subject, "buy"),
        )
        .await
        .expect_code(250);
    }
    let raw = pushed(&srv, "Subject: spammy offer").await;
    let status = field(&raw, "X-Spam-Status").expect("status");
    assert!(
        status.starts_with("Yes, score=8.00 required=15.00 action=add_header tests="),
        "{status}"
    );
    assert!(status.contains("MXGATE_TEST_SPAMMY"), "{status}");
    assert_eq!(field(&raw, "X-Spam-Score").as_deref(), Some("8.00"));
    let raw = pushed(&srv, "Subject: [SPAM] rewrite me").await;
    let status = field(&raw, "X-Spam-Status").expect("status");
    assert!(
        status.starts_with("Yes, score=11.00 required=15.00 action=rewrite_subject"),
        "{status}"
    );
    assert_eq!(field(&raw, "Subject").as_deref(), Some("[SPAM] rewrite me"));
    assert_eq!(spam_results(&srv, "add_header").await, 1.0);
    assert_eq!(spam_results(&srv, "rewrite_subject").await, 1.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn soft_reject_and_greylist_are_451_and_nothing_is_queued() {
    let rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    for subject in ["please try later", "greylist me"] {
        let r = srv
            .send_inbound(
                "a@client.test",
                &["sales@example.test"],
                &message(subject, "x"),
            )
            .await;
        expect_reply(&r, &reply::SPAM_DEFERRED);
    }
    assert_eq!(spam_results(&srv, "soft_reject").await, 1.0);
    assert_eq!(spam_results(&srv, "greylist").await, 1.0);
    let deferred = &[("result", "tempfail"), ("reason", "spam")];
    assert_eq!(srv.metric(INBOUND_MESSAGES, deferred).await, Some(2.0));
    srv.send_inbound(
        "a@client.test",
        &["sales@example.test"],
        &message("after", "hi"),
    )
    .await
    .expect_code(250);
    pushed(&srv, "Subject: after").await;
    assert_eq!(srv.erp.pushes().len(), 1, "only the clean message");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_tag_domain_gets_gtube_tagged_not_refused_and_an_off_domain_is_not_scanned() {
    let rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    let gtube = message("gtube for the tag domain", GTUBE);
    srv.send_inbound("a@client.test", &["sales@tagged.test"], &gtube)
        .await
        .expect_code(250);
    let raw = pushed(&srv, "gtube for the tag domain").await;
    let status = field(&raw, "X-Spam-Status").expect("status");
    assert!(
        status.starts_with("Yes, score=15.00 required=15.00 action=reject"),
        "{status}"
    );
    srv.send_inbound(
        "a@client.test",
        &["sales@unscanned.test"],
        &message("off", GTUBE),
    )
    .await
    .expect_code(250);
    let raw = pushed(&srv, "Subject: off").await;
    assert_eq!(field(&raw, "X-Spam-Status"), None, "not scanned: {raw}");
    assert_eq!(spam_results(&srv, "reject").await, 1.0, "one scan only");
    // One DATA reply for both domains: the strictest mode, enforce, decides.
    let r = srv
        .send_inbound(
            "a@client.test",
            &["sales@tagged.test", "sales@example.test"],
            &message("both", GTUBE),
        )
        .await;
    assert_eq!(r.code, 550, "{r}");
    srv.shutdown().await;
}

#[tokio::test]
async fn rspamd_stopped_with_on_error_accept_delivers_tagged_unknown() {
    let mut rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "accept").await;
    rspamd.stop();
    srv.send_inbound(
        "a@client.test",
        &["sales@example.test"],
        &message("down", GTUBE),
    )
    .await
    .expect_code(250);
    let raw = pushed(&srv, "Subject: down").await;
    assert_eq!(
        field(&raw, "X-Spam-Status").as_deref(),
        Some("unknown"),
        "{raw}"
    );
    assert_eq!(field(&raw, "X-Spam-Score"), None, "{raw}");
    assert_eq!(spam_results(&srv, "error").await, 1.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn rspamd_stopped_with_on_error_tempfail_is_451() {
    let mut rspamd = Rspamd::start().await;
    let srv = start(&rspamd.url(), "tempfail").await;
    rspamd.stop();
    let r = srv
        .send_inbound(
            "a@client.test",
            &["sales@example.test"],
            &message("down", "x"),
        )
        .await;
    expect_reply(&r, &reply::SPAM_FILTER_UNAVAILABLE);
    let tempfail = &[
        ("result", "tempfail"),
        ("reason", "spam_filter_unavailable"),
    ];
    assert_eq!(srv.metric(INBOUND_MESSAGES, tempfail).await, Some(1.0));
    assert_eq!(spam_results(&srv, "error").await, 1.0);
    srv.shutdown().await;
}

/// A filter that accepts the connection and never answers: `spam.timeout` ends the wait.
#[tokio::test]
async fn rspamd_slower_than_the_timeout_follows_on_error() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", hung.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hung.accept().await {
            conns.push(c);
        }
    });
    let srv = TestServer::start(&spam_toml(&url, "tempfail", "300ms")).await;
    let r = srv
        .send_inbound(
            "a@client.test",
            &["sales@example.test"],
            &message("slow", "x"),
        )
        .await;
    expect_reply(&r, &reply::SPAM_FILTER_UNAVAILABLE);
    let (_, scrape) = srv.admin_get("/metrics").await;
    let count = common::metrics::sample(&scrape, "mxgate_spam_scan_seconds_count", &[]);
    assert_eq!(count, Some(1.0), "the scan time histogram counted it");
    srv.shutdown().await;
    held.abort();
}

#[tokio::test]
async fn a_reload_turns_spam_filtering_on() {
    let rspamd = Rspamd::start().await;
    let srv = TestServer::start_from_file("").await;
    srv.send_inbound(
        "a@client.test",
        &["sales@example.test"],
        &message("before", GTUBE),
    )
    .await
    .expect_code(250);
    srv.write_config(&spam_toml(&rspamd.url(), "accept", "5s"));
    let url = format!("{}/api/reload", srv.admin_url());
    let (status, body) = common::erp::http_request("POST", &url, "").await;
    assert_eq!(status, 200, "{body}");
    let r = srv
        .send_inbound(
            "a@client.test",
            &["sales@example.test"],
            &message("after", GTUBE),
        )
        .await;
    assert_eq!(r.code, 550, "{r}");
    srv.shutdown().await;
}
