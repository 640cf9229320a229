//! Warming tiers, provider hourly caps and adaptive throttling end to end (issue 6 §1–4, §8):
//! a trusted-network client relays through the real server to a loopback smart host; the
//! server's clock is stepped across days and hours instead of sleeping. Caps are tiny so the
//! tests stay fast; the logic is the same as for the defaults.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::sink::{Sink, SinkOptions, SinkTls};
use common::{Erp, Listener, SmtpClient, TestServer, eventually};
use mxgate::config::HumanDuration;
use mxgate::metrics::{
    DELIVERY_ATTEMPTS, MESSAGES_DELIVERED, PROVIDER_HOURLY_CAP, PROVIDER_HOURLY_SENT,
    PROVIDER_THROTTLE_EVENTS, PROVIDER_THROTTLE_LEVEL, WARMING_DAILY_CAP, WARMING_DAILY_SENT,
    WARMING_DAY, WARMING_DEFERRALS, WARMING_IP_DAILY_CAP, WARMING_IP_DAILY_SENT, WARMING_IP_DAY,
};
use mxgate::queue::RcptState;

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;

async fn sink() -> Sink {
    Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await
}

/// Trusted relay to `sink`, warming on with `warming` (TOML under `[warming]`) plus `more`.
fn config(sink: &Sink, warming: &str, more: &str) -> String {
    format!(
        r#"
[relay]
trusted_networks = ["127.0.0.1/32"]
[[relay.smarthosts]]
name = "sink"
host = "127.0.0.1"
port = {port}
security = "none"
[warming]
enabled = true
{warming}
{more}
"#,
        port = sink.addr.port()
    )
}

const SCHEDULE: &str = r#"
[[warming.schedule]]
days = "1-3"
daily_cap = 3
[[warming.schedule]]
days = "4-6"
daily_cap = 5
[[warming.schedule]]
days = "7+"
"#;

async fn start(toml: &str) -> TestServer {
    TestServer::start_configured(Erp::start().await, toml, |c| {
        // Caps hold mail for days here: it must not expire meanwhile.
        c.queue.expire_after = HumanDuration::secs(60 * DAY);
    })
    .await
}

/// Steps `srv`'s clock to one minute past the next multiple of `unit` seconds, so no day or
/// hour boundary of real time falls inside the test; returns the step.
fn align(srv: &TestServer, unit: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let step = Duration::from_secs(unit - now % unit + 60);
    srv.running().clock.advance(step);
    step
}

/// One message per entry of `to`, each to that one address, from `from`, over one session.
async fn relay(srv: &TestServer, from: &str, to: &[String]) {
    let mut c: SmtpClient = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO app.internal").await.expect_code(250);
    for (i, rcpt) in to.iter().enumerate() {
        c.cmd(&format!("MAIL FROM:<{from}>")).await.expect_code(250);
        c.cmd(&format!("RCPT TO:<{rcpt}>")).await.expect_code(250);
        c.cmd("DATA").await.expect_code(354);
        let body = format!(
            "From: <{from}>\r\nTo: <{rcpt}>\r\nSubject: m{i}\r\nMessage-ID: <m{i}.{rcpt}@erp.test>\r\n\r\nHello\r\n"
        );
        c.send_data(&body).await.expect_code(250);
    }
    c.cmd("QUIT").await;
}

fn addrs(prefix: &str, domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@{domain}")).collect()
}

/// Recipients deferred with `reason` in their last reply.
fn held(srv: &TestServer, reason: &str) -> Vec<mxgate::queue::Recipient> {
    srv.running()
        .queue
        .list(None, 10_000)
        .into_iter()
        .flat_map(|m| m.recipients)
        .filter(|r| {
            r.state == RcptState::Deferred
                && r.last_reply.as_deref().is_some_and(|l| l.contains(reason))
        })
        .collect()
}

/// (sent, deferred with `reason` in the last reply) over all queued relayed recipients.
fn states(srv: &TestServer, reason: &str) -> (usize, usize) {
    let all: Vec<_> = srv
        .running()
        .queue
        .list(None, 10_000)
        .into_iter()
        .flat_map(|m| m.recipients)
        .collect();
    let sent = all.iter().filter(|r| r.state == RcptState::Sent).count();
    let held = all
        .iter()
        .filter(|r| {
            r.state == RcptState::Deferred
                && r.last_reply.as_deref().is_some_and(|l| l.contains(reason))
        })
        .count();
    (sent, held)
}

async fn wait_states(srv: &TestServer, reason: &str, sent: usize, held: usize) {
    eventually(
        20,
        &format!("{sent} sent, {held} held for {reason:?}"),
        || {
            let s = states(srv, reason);
            async move { (s == (sent, held)).then_some(()) }
        },
    )
    .await;
}

async fn wait_sink(sink: &Sink, n: usize) {
    eventually(20, &format!("{n} message(s) at the smart host"), || async {
        (sink.received().len() >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn day_one_cap_holds_the_next_message_for_the_next_day_and_day_four_allows_more() {
    let sink = sink().await;
    let srv = start(&config(&sink, "", SCHEDULE)).await;
    align(&srv, DAY);

    // Day 1, cap 3: the 4th and 5th wait ("warming cap"), nothing is dropped.
    relay(&srv, "app@example.test", &addrs("a", "remote.test", 5)).await;
    wait_states(&srv, "warming cap", 3, 2).await;
    assert_eq!(sink.received().len(), 3);
    assert_eq!(
        srv.metric(WARMING_DAY, &[("sending_domain", "example.test")])
            .await,
        Some(1.0)
    );
    assert_eq!(
        srv.metric(WARMING_DAILY_CAP, &[("sending_domain", "example.test")])
            .await,
        Some(3.0)
    );
    assert_eq!(
        srv.metric(WARMING_DAILY_SENT, &[("sending_domain", "example.test")])
            .await,
        Some(3.0)
    );
    assert!(
        srv.metric(
            WARMING_DEFERRALS,
            &[
                ("sending_domain", "example.test"),
                ("reason", "warming cap")
            ]
        )
        .await
        .is_some()
    );

    // Day 2: the held two go out, in the new day's window.
    srv.running().clock.advance(Duration::from_secs(DAY));
    wait_sink(&sink, 5).await;
    wait_states(&srv, "warming cap", 5, 0).await;

    // Day 4: cap 5.
    srv.running().clock.advance(Duration::from_secs(2 * DAY));
    relay(&srv, "app@example.test", &addrs("b", "remote.test", 7)).await;
    wait_states(&srv, "warming cap", 10, 2).await;
    assert_eq!(sink.received().len(), 10);
    assert_eq!(
        srv.metric(WARMING_DAILY_CAP, &[("sending_domain", "example.test")])
            .await,
        Some(5.0)
    );
    assert_eq!(
        srv.metric(WARMING_DAY, &[("sending_domain", "example.test")])
            .await,
        Some(4.0)
    );

    // Day 7+: full quota, nothing held.
    srv.running().clock.advance(Duration::from_secs(3 * DAY));
    wait_states(&srv, "warming cap", 12, 0).await;
    relay(&srv, "app@example.test", &addrs("c", "remote.test", 6)).await;
    wait_states(&srv, "warming cap", 18, 0).await;
    assert_eq!(
        srv.metric(WARMING_DAILY_CAP, &[("sending_domain", "example.test")])
            .await,
        Some(f64::INFINITY)
    );
    common::promtool_check_metrics(&srv.running().metrics.render());
    srv.shutdown().await;
}

#[tokio::test]
async fn a_restart_keeps_the_days_count_and_the_day_in_warming() {
    let sink = sink().await;
    let mut srv = start(&config(&sink, "", SCHEDULE)).await;
    let step = align(&srv, DAY);
    relay(&srv, "app@example.test", &addrs("a", "remote.test", 3)).await;
    wait_states(&srv, "warming cap", 3, 0).await;

    srv.restart().await;
    srv.running().clock.advance(step);
    // Same day: the count survived, the cap is spent.
    relay(&srv, "app@example.test", &addrs("b", "remote.test", 1)).await;
    wait_states(&srv, "warming cap", 3, 1).await;
    assert_eq!(sink.received().len(), 3);

    // Three days later it is day 4 (cap 5), counted from the first send before the
    // restart: a reset day in warming would be day 1 with cap 3.
    srv.running().clock.advance(Duration::from_secs(3 * DAY));
    relay(&srv, "app@example.test", &addrs("c", "remote.test", 5)).await;
    wait_states(&srv, "warming cap", 8, 1).await;
    assert_eq!(sink.received().len(), 8);
    srv.shutdown().await;
}

#[tokio::test]
async fn gmail_hourly_cap_defers_the_excess_while_yahoo_mail_still_flows() {
    let sink = sink().await;
    let warming = r#"
[warming.providers.gmail]
new_hourly = 2
warmed_hourly = 4
"#;
    let srv = start(&config(&sink, "", warming)).await;
    align(&srv, HOUR);
    relay(&srv, "app@example.test", &addrs("g", "gmail.com", 5)).await;
    relay(&srv, "app@example.test", &addrs("y", "yahoo.com", 4)).await;
    wait_states(&srv, "provider rate", 6, 3).await;
    let rcpts: Vec<String> = sink.received().into_iter().flat_map(|r| r.rcpts).collect();
    assert_eq!(
        rcpts.iter().filter(|r| r.ends_with("@yahoo.com")).count(),
        4,
        "{rcpts:?}"
    );
    assert_eq!(
        rcpts.iter().filter(|r| r.ends_with("@gmail.com")).count(),
        2,
        "{rcpts:?}"
    );
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_CAP,
            &[("sending_domain", "example.test"), ("provider", "gmail")]
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_SENT,
            &[("sending_domain", "example.test"), ("provider", "gmail")]
        )
        .await,
        Some(2.0)
    );

    // Paced, not held to the top of the next hour: governor frees one cell per half hour
    // (2 an hour), and the held recipients wait for the next free cell.
    let now = srv.running().clock.now_ms();
    let next_hour = (now / (HOUR * 1000) + 1) * HOUR * 1000;
    for r in held(&srv, "provider rate") {
        assert!(
            r.next_attempt_ms < next_hour && r.next_attempt_ms <= now + HOUR * 1000 / 2,
            "held until {} (now {now}, next hour {next_hour})",
            r.next_attempt_ms
        );
    }
    // Each half hour one more goes out, in the same clock hour as the first two.
    for (sent, left) in [(7, 2), (8, 1), (9, 0)] {
        srv.running().clock.advance(Duration::from_secs(HOUR / 2));
        wait_states(&srv, "provider rate", sent, left).await;
    }
    assert_eq!(sink.received().len(), 9);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_an_hour_does_not_reset_a_providers_rate() {
    let sink = sink().await;
    let warming = r#"
[warming.providers.gmail]
new_hourly = 2
warmed_hourly = 4
"#;
    let mut srv = start(&config(&sink, "", warming)).await;
    let step = align(&srv, HOUR) + Duration::from_secs(20 * 60);
    srv.running().clock.advance(Duration::from_secs(20 * 60));
    relay(&srv, "app@example.test", &addrs("g", "gmail.com", 2)).await;
    wait_states(&srv, "provider rate", 2, 0).await;

    srv.restart().await;
    srv.running().clock.advance(step);
    // Same hour: the two sends before the restart still count, the third waits (a fresh
    // limiter would let it through at once).
    relay(&srv, "app@example.test", &addrs("h", "gmail.com", 1)).await;
    wait_states(&srv, "provider rate", 2, 1).await;
    assert_eq!(sink.received().len(), 2);
    // Half an hour later a cell is free again.
    srv.running().clock.advance(Duration::from_secs(HOUR / 2));
    wait_states(&srv, "provider rate", 3, 0).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_held_recipient_counts_no_attempt_and_reports_no_deferred_event() {
    let sink = sink().await;
    let receiver = Erp::start().await;
    let warming = r#"
[warming.providers.gmail]
new_hourly = 1
warmed_hourly = 1
"#;
    let events = format!(
        "[events]\nurl = \"{}/events\"\nretry_max = \"1s\"\n",
        receiver.url()
    );
    let srv = start(&config(&sink, "", &format!("{warming}{events}"))).await;
    align(&srv, HOUR);
    relay(&srv, "app@example.test", &addrs("g", "gmail.com", 3)).await;
    wait_states(&srv, "provider rate", 1, 2).await;
    // An hour later one cell is free: one goes, the other is held a second time.
    srv.running().clock.advance(Duration::from_secs(HOUR));
    wait_states(&srv, "provider rate", 2, 1).await;
    let id = srv
        .running()
        .queue
        .list(Some(RcptState::Deferred), 10)
        .first()
        .expect("the held message")
        .id
        .to_string();
    let (status, body) = srv.admin_get(&format!("/api/queue/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("queue JSON");
    let r = &json["recipients"][0];
    assert_eq!(r["state"], "deferred", "{json}");
    assert_eq!(r["attempts"], 0, "{json}");
    assert!(
        r["last_reply"]
            .as_str()
            .is_some_and(|l| l.starts_with("provider rate:")),
        "{json}"
    );
    assert_eq!(
        srv.metric(DELIVERY_ATTEMPTS, &[("result", "deferred")])
            .await,
        None,
        "a hold counted as a delivery attempt"
    );
    assert!(
        srv.metric(
            WARMING_DEFERRALS,
            &[
                ("sending_domain", "example.test"),
                ("reason", "provider rate")
            ]
        )
        .await
        .is_some()
    );

    // The hour after, it goes out on its first attempt; the events, in order, report three
    // deliveries and nothing in between.
    srv.running().clock.advance(Duration::from_secs(HOUR));
    wait_states(&srv, "provider rate", 3, 0).await;
    let reported = eventually(20, "three delivered events", || async {
        let e: Vec<serde_json::Value> = receiver
            .pushes()
            .iter()
            .filter(|p| p.path == "/events")
            .map(|p| serde_json::from_slice(&p.body).expect("event JSON"))
            .collect();
        (e.iter().filter(|v| v["event"] == "delivered").count() >= 3).then_some(e)
    })
    .await;
    let kinds: Vec<&str> = reported
        .iter()
        .map(|v| v["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["delivered"; 3], "{reported:?}");
    assert!(reported.iter().all(|v| v["attempts"] == 1), "{reported:?}");
    let (_, body) = srv.admin_get(&format!("/api/queue/{id}")).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("queue JSON");
    assert_eq!(json["recipients"][0]["attempts"], 1, "{json}");
    srv.shutdown().await;
}

#[tokio::test]
async fn repeated_421_from_a_provider_slows_it_and_it_recovers_after_quiet_periods() {
    let sink = sink().await;
    let warming = r#"
throttle_quiet = "10m"
[warming.providers.gmail]
new_hourly = 8
warmed_hourly = 8
"#;
    let srv = start(&config(&sink, warming, "")).await;
    align(&srv, HOUR);
    sink.script_rcpt(&[
        "421 4.7.0 Try again later, closing connection",
        "421 4.7.0 Try again later, closing connection",
    ]);
    relay(&srv, "app@example.test", &addrs("first", "gmail.com", 1)).await;
    // Two rate-limit replies: 8 → 4 → 2 per hour. The two refused attempts count towards
    // the rate (the provider saw them), so the 2 an hour are in use: the message is held.
    wait_states(&srv, "provider rate", 0, 1).await;
    let gmail = [("sending_domain", "example.test"), ("provider", "gmail")];
    assert_eq!(srv.metric(PROVIDER_THROTTLE_LEVEL, &gmail).await, Some(2.0));
    assert_eq!(
        srv.metric(
            PROVIDER_THROTTLE_EVENTS,
            &[("sending_domain", "example.test"), ("provider", "gmail")]
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_CAP,
            &[("sending_domain", "example.test"), ("provider", "gmail")]
        )
        .await,
        Some(2.0)
    );
    relay(&srv, "app@example.test", &addrs("g", "gmail.com", 4)).await;
    wait_states(&srv, "provider rate", 0, 5).await;
    assert!(sink.received().is_empty());

    // Quiet for 10 minutes (same hour): one step back, 4 per hour with 2 in use, two go out.
    srv.running().clock.advance(Duration::from_secs(600));
    wait_states(&srv, "provider rate", 2, 3).await;
    assert_eq!(srv.metric(PROVIDER_THROTTLE_LEVEL, &gmail).await, Some(1.0));
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_CAP,
            &[("sending_domain", "example.test"), ("provider", "gmail")]
        )
        .await,
        Some(4.0)
    );
    // Another quiet period: the full 8 per hour again with 4 in use, the last three go.
    srv.running().clock.advance(Duration::from_secs(600));
    wait_states(&srv, "provider rate", 5, 0).await;
    assert_eq!(srv.metric(PROVIDER_THROTTLE_LEVEL, &gmail).await, Some(0.0));
    assert_eq!(sink.received().len(), 5);
    srv.shutdown().await;
}

#[tokio::test]
async fn tempfail_mode_answers_451_once_the_days_cap_is_spent() {
    let sink = sink().await;
    let srv = start(&config(&sink, "tempfail = true", SCHEDULE)).await;
    align(&srv, DAY);
    relay(&srv, "app@example.test", &addrs("a", "remote.test", 3)).await;
    wait_states(&srv, "warming cap", 3, 0).await;
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO app.internal").await.expect_code(250);
    c.cmd("MAIL FROM:<app@example.test>")
        .await
        .expect(451, "4.7.1 Warming tier rate limit");
    // Another sending domain has its own cap.
    c.cmd("MAIL FROM:<app@other.test>").await.expect_code(250);
    c.cmd("RSET").await.expect_code(250);
    // The next day the domain may send again.
    srv.running().clock.advance(Duration::from_secs(DAY));
    c.cmd("MAIL FROM:<app@example.test>").await.expect_code(250);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_source_ip_has_its_own_tier_shared_by_its_sending_domains() {
    let sink = sink().await;
    let srv = start(&config(&sink, "", SCHEDULE)).await;
    align(&srv, DAY);
    // The first message teaches the server its source IP (127.0.0.1 towards the sink).
    relay(&srv, "app@example.test", &addrs("a", "remote.test", 1)).await;
    wait_states(&srv, "source IP", 1, 0).await;
    // Two domains, each under its own cap of 3, together over the IP's cap of 3.
    relay(&srv, "app@example.test", &addrs("b", "remote.test", 1)).await;
    relay(&srv, "news@other.test", &addrs("c", "remote.test", 2)).await;
    wait_states(&srv, "warming cap: source IP 127.0.0.1", 3, 1).await;
    assert_eq!(sink.received().len(), 3);
    assert_eq!(
        srv.metric(WARMING_IP_DAY, &[("sending_ip", "127.0.0.1")])
            .await,
        Some(1.0)
    );
    assert_eq!(
        srv.metric(WARMING_IP_DAILY_CAP, &[("sending_ip", "127.0.0.1")])
            .await,
        Some(3.0)
    );
    assert_eq!(
        srv.metric(WARMING_IP_DAILY_SENT, &[("sending_ip", "127.0.0.1")])
            .await,
        Some(3.0)
    );
    // The relay reports the address it sent from: the `sending_ip` label is filled.
    let ip = [("sending_ip", "127.0.0.1")];
    assert!(srv.metric(MESSAGES_DELIVERED, &ip).await.is_some());
    // Next day the held one goes.
    srv.running().clock.advance(Duration::from_secs(DAY));
    wait_states(&srv, "source IP", 4, 0).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn each_streams_source_ip_has_its_own_tier() {
    let sink = sink().await;
    let more = format!(
        "{SCHEDULE}\n[streams]\nmass_from = [\"@news.test\", \"@promo.test\"]\nmass_source_ip = \"127.0.0.2\"\n"
    );
    let srv = start(&config(&sink, "", &more)).await;
    align(&srv, DAY);
    // Mass mail leaves from its configured IP, whose tier counts from the first message.
    relay(&srv, "list@news.test", &addrs("a", "remote.test", 3)).await;
    wait_states(&srv, "source IP", 3, 0).await;
    relay(&srv, "list@promo.test", &addrs("b", "remote.test", 1)).await;
    wait_states(&srv, "warming cap: source IP 127.0.0.2", 3, 1).await;
    // Transactional mail leaves from another IP: that IP's tier is untouched by mass mail.
    relay(&srv, "app@example.test", &addrs("c", "remote.test", 2)).await;
    wait_states(&srv, "warming cap: source IP 127.0.0.2", 5, 1).await;
    let got = sink.received();
    let from = |peer: &str| got.iter().filter(|r| r.peer.to_string() == peer).count();
    assert_eq!((from("127.0.0.2"), from("127.0.0.1")), (3, 2));
    assert_eq!(
        srv.metric(WARMING_IP_DAILY_SENT, &[("sending_ip", "127.0.0.2")])
            .await,
        Some(3.0)
    );
    assert_eq!(
        srv.metric(WARMING_IP_DAILY_SENT, &[("sending_ip", "127.0.0.1")])
            .await,
        Some(2.0)
    );
    srv.shutdown().await;
}

/// A server relaying by MX (every MX host is `mx`, the sink) with warming on and
/// `providers` (TOML); `domains` = (domain, its MX host) served by the test DNS. The clock
/// is aligned to the hour.
async fn start_direct_mx(mx: &Sink, providers: &str, domains: &[(&str, &str)]) -> TestServer {
    let toml = format!(
        "[relay]\ntrusted_networks = [\"127.0.0.1/32\"]\ndirect_mx = true\nmx_port = {port}\n[warming]\nenabled = true\n{providers}",
        port = mx.addr.port()
    );
    let srv = start(&toml).await;
    align(&srv, HOUR);
    for (domain, host) in domains {
        srv.dns.mx(domain, 10, host);
        srv.dns.a(host, "127.0.0.1".parse().expect("ip"));
    }
    srv
}

#[tokio::test]
async fn a_company_domain_is_recognised_by_its_mx_hosts_and_gets_that_providers_cap() {
    let mx = sink().await;
    let providers = "[warming.providers.google_workspace]\nnew_hourly = 1\nwarmed_hourly = 1\n";
    let srv = start_direct_mx(
        &mx,
        providers,
        &[
            ("corp.test", "aspmx.l.google.com"),
            ("plain.test", "mx.plain.test"),
        ],
    )
    .await;
    relay(&srv, "app@example.test", &addrs("w", "corp.test", 2)).await;
    relay(&srv, "app@example.test", &addrs("p", "plain.test", 2)).await;
    wait_states(&srv, "to google_workspace", 3, 1).await;
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_SENT,
            &[
                ("sending_domain", "example.test"),
                ("provider", "google_workspace")
            ]
        )
        .await,
        Some(1.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_provider_of_the_operators_own_is_recognised_by_its_domains_and_mx_hosts() {
    let mx = sink().await;
    let providers = r#"
[warming.providers.orange]
new_hourly = 2
warmed_hourly = 2
domains = ["orange.test"]
mx = ["*.orange-mx.test"]
"#;
    // orange.test by its domain, corp.test by its MX host; other.test is "other".
    let srv = start_direct_mx(
        &mx,
        providers,
        &[
            ("orange.test", "mx.orange.test"),
            ("corp.test", "in1.orange-mx.test"),
            ("other.test", "mx.other.test"),
        ],
    )
    .await;
    relay(&srv, "app@example.test", &addrs("o", "orange.test", 1)).await;
    relay(&srv, "app@example.test", &addrs("c", "corp.test", 2)).await;
    relay(&srv, "app@example.test", &addrs("x", "other.test", 2)).await;
    // Two of the three Orange recipients go this hour; other.test has no cap.
    wait_states(&srv, "to orange", 4, 1).await;
    assert_eq!(
        srv.metric(
            PROVIDER_HOURLY_SENT,
            &[("sending_domain", "example.test"), ("provider", "orange")]
        )
        .await,
        Some(2.0)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn provider_table_entries_are_checked() {
    let bad = r#"
[warming.providers.orange]
new_hourly = 1
warmed_hourly = 1
mx = ["bad host"]
[warming.providers.hotmial]
new_hourly = 1
warmed_hourly = 1
"#;
    let e = match mxgate::config::Config::from_toml(bad, std::path::Path::new("t.toml")) {
        Ok(_) => panic!("accepted a bad provider table"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("warming.providers.orange.mx[0]"), "{e}");
    assert!(e.contains("warming.providers.hotmial"), "{e}");
    assert!(!e.contains("warming.providers.orange:"), "{e}");
}

#[tokio::test]
async fn a_providers_connection_limit_bounds_the_sessions_to_it() {
    let sink = sink().await;
    let warming = r#"
[warming.providers.gmail]
new_hourly = 100
warmed_hourly = 100
connections = 1
"#;
    let srv = start(&config(&sink, "", warming)).await;
    // One message to five Gmail recipients: five attempts due together (queue.concurrency
    // is 8, relay.destination_concurrency 8), one session at a time, reused.
    let mut c = srv.smtp(Listener::Submission).await;
    c.cmd("EHLO app.internal").await.expect_code(250);
    c.cmd("MAIL FROM:<app@example.test>").await.expect_code(250);
    for i in 0..5 {
        c.cmd(&format!("RCPT TO:<u{i}@gmail.com>"))
            .await
            .expect_code(250);
    }
    c.cmd("DATA").await.expect_code(354);
    c.send_data("Subject: fanout\r\n\r\nHello\r\n")
        .await
        .expect_code(250);
    wait_sink(&sink, 5).await;
    assert_eq!(sink.connections(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_configured_start_date_sets_the_day_and_a_warmed_domain_gets_the_warmed_rate() {
    let sink = sink().await;
    let warming = r#"
start = { "example.test" = "2020-01-01" }
[warming.providers.gmail]
new_hourly = 1
warmed_hourly = 3
"#;
    let srv = start(&config(&sink, warming, "")).await;
    align(&srv, HOUR);
    relay(&srv, "app@example.test", &addrs("g", "gmail.com", 4)).await;
    wait_states(&srv, "provider rate: 3 of 3", 3, 1).await;
    assert_eq!(
        srv.metric(WARMING_DAILY_CAP, &[("sending_domain", "example.test")])
            .await,
        Some(f64::INFINITY)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_recipient_held_past_expiry_expires_with_an_expired_event() {
    let sink = sink().await;
    let receiver = Erp::start().await;
    let events = format!(
        "[events]\nurl = \"{}/events\"\nretry_max = \"1s\"\n",
        receiver.url()
    );
    let toml = config(&sink, "", &format!("{SCHEDULE}{events}"));
    let srv = TestServer::start_configured(Erp::start().await, &toml, |c| {
        c.queue.expire_after = HumanDuration::secs(6 * HOUR);
    })
    .await;
    align(&srv, DAY);
    // Day 1, cap 3: the 4th waits for tomorrow, but expires after six hours.
    relay(&srv, "app@example.test", &addrs("a", "remote.test", 4)).await;
    wait_states(&srv, "warming cap", 3, 1).await;
    let held = held(&srv, "warming cap");
    assert_eq!(held[0].attempts, 0);
    srv.running().clock.advance(Duration::from_secs(6 * HOUR));
    let expired = eventually(20, "the held recipient expired", || async {
        let all: Vec<_> = srv
            .running()
            .queue
            .list(Some(RcptState::Expired), 10)
            .into_iter()
            .flat_map(|m| m.recipients)
            .filter(|r| r.state == RcptState::Expired)
            .collect();
        all.into_iter().next()
    })
    .await;
    assert_eq!(expired.address, "a3@remote.test");
    assert_eq!(expired.attempts, 0);
    assert!(
        expired
            .last_reply
            .as_deref()
            .is_some_and(|l| l.starts_with("warming cap:")),
        "{expired:?}"
    );
    let reported = eventually(20, "an expired event", || async {
        let e: Vec<serde_json::Value> = receiver
            .pushes()
            .iter()
            .filter(|p| p.path == "/events")
            .map(|p| serde_json::from_slice(&p.body).expect("event JSON"))
            .collect();
        e.iter().any(|v| v["event"] == "expired").then_some(e)
    })
    .await;
    let kinds: Vec<&str> = reported
        .iter()
        .map(|v| v["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["delivered", "delivered", "delivered", "expired"],
        "{reported:?}"
    );
    // No attempt was made for it, and the event says so.
    let expired_event = reported.iter().find(|v| v["event"] == "expired");
    assert_eq!(expired_event.map(|v| v["attempts"].clone()), Some(0.into()));
    assert_eq!(sink.received().len(), 3);
    srv.shutdown().await;
}
