//! Source IP pools and provider daily caps (issue 17 items 6 and 7), end to end: a trusted
//! client relays through the real server to a loopback smart host (a sink that records the
//! address each message came from); the pool's addresses are 127.0.0.1 and 127.0.0.2, both
//! on the loopback interface; 192.0.2.1 (TEST-NET-1) is an address this host lacks.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::process::spawn_server;
use common::sink::{Sink, SinkOptions, SinkTls};
use common::{Erp, Listener, SmtpClient, TestServer, eventually};
use mxgate::config::HumanDuration;
use mxgate::metrics::{
    PROVIDER_DAILY_CAP, PROVIDER_DAILY_SENT, PROVIDER_HOURLY_CAP, PROVIDER_HOURLY_SENT,
    PROVIDER_THROTTLE_LEVEL, WARMING_DEFERRALS,
};
use mxgate::queue::RcptState;

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;
const POOL: [&str; 2] = ["127.0.0.1", "127.0.0.2"];

async fn sink() -> Sink {
    Sink::start(SinkOptions {
        tls: SinkTls::None,
        auth: None,
    })
    .await
}

/// Trusted relay to `sink` with `more` TOML (new tables) appended.
fn relay_toml(sink: &Sink, more: &str) -> String {
    format!(
        "[relay]\ntrusted_networks = [\"127.0.0.1/32\"]\n[[relay.smarthosts]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n{more}\n",
        sink.addr.port()
    )
}

/// One message per address of `to` from `from`, over one session to `addr`.
async fn relay(addr: std::net::SocketAddr, from: &str, to: &[String]) {
    let mut c = SmtpClient::connect(addr).await;
    c.read_reply().await.expect_code(220);
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

/// The address each recipient's message came from, once `n` have arrived.
async fn peers(sink: &Sink, n: usize) -> HashMap<String, String> {
    eventually(60, &format!("{n} messages at the sink"), || async {
        let got = sink.received();
        (got.len() >= n).then(|| {
            got.iter()
                .flat_map(|r| r.rcpts.iter().map(|a| (a.clone(), r.peer.to_string())))
                .collect()
        })
    })
    .await
}

fn count(peers: &HashMap<String, String>, ip: &str) -> usize {
    peers.values().filter(|p| *p == ip).count()
}

#[tokio::test]
async fn two_source_ips_share_a_stream_by_weight_and_each_domain_keeps_its_ip() {
    let sink = sink().await;
    let toml = relay_toml(
        &sink,
        "[streams]\ntransactional_source_ips = [{ ip = \"127.0.0.1\", weight = 3 }, { ip = \"127.0.0.2\", weight = 1 }]",
    );
    let srv = TestServer::start_configured(Erp::start().await, &toml, |_| {}).await;
    // One recipient in each of 60 domains: rotation is per destination domain.
    let to: Vec<String> = (0..60).map(|i| format!("r@d{i}.test")).collect();
    relay(srv.addr(Listener::Submission), "app@example.test", &to).await;
    let first = peers(&sink, 60).await;
    let (heavy, light) = (count(&first, "127.0.0.1"), count(&first, "127.0.0.2"));
    assert_eq!(heavy + light, 60, "{first:?}");
    assert!(light > 0, "the weight-1 address is used too: {first:?}");
    assert!(
        heavy > light,
        "weight 3 takes more domains than weight 1: {heavy} vs {light}"
    );
    // A second message to each of the first 20 domains leaves from the same address.
    let again: Vec<String> = (0..20).map(|i| format!("s@d{i}.test")).collect();
    relay(srv.addr(Listener::Submission), "app@example.test", &again).await;
    let all = peers(&sink, 80).await;
    for i in 0..20 {
        assert_eq!(
            all[&format!("s@d{i}.test")],
            all[&format!("r@d{i}.test")],
            "d{i}.test keeps its source IP"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_pool_address_the_host_lacks_is_skipped_with_one_warning() {
    let sink = sink().await;
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dns = common::dns::DnsServer::start().await;
    // The missing address weighs 100 to 1: without the skip it would win every domain.
    let streams = "[streams]\ntransactional_source_ips = [{ ip = \"192.0.2.1\", weight = 100 }, { ip = \"127.0.0.1\" }]";
    let extra = format!("{}{}", dns.config_toml(), relay_toml(&sink, streams));
    let path = dir.path().join("mxgate.toml");
    std::fs::write(&path, common::base_toml(dir.path(), &erp.url(), &extra)).expect("config");
    let mut proc = spawn_server(&path);
    let to: Vec<String> = (0..5).map(|i| format!("r@d{i}.test")).collect();
    relay(proc.submission, "app@example.test", &to).await;
    let got = peers(&sink, 5).await;
    assert_eq!(count(&got, "127.0.0.1"), 5, "{got:?}");
    let log = proc.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("192.0.2.1"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for the address: {log}");
    assert!(
        warnings[0].contains("not an address of this host"),
        "{}",
        warnings[0]
    );
    proc.sigterm();
    assert_eq!(proc.wait_exit(30), Some(0));
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

#[tokio::test]
async fn a_providers_daily_cap_moves_to_the_next_ip_then_holds_until_the_next_day() {
    let sink = sink().await;
    // Gmail with a daily cap of 2 per source IP (whatever the IP's tier), two IPs.
    let toml = relay_toml(
        &sink,
        "[streams]\ntransactional_source_ips = [{ ip = \"127.0.0.1\" }, { ip = \"127.0.0.2\" }]\n\
         [warming]\nenabled = true\n\
         [warming.providers.gmail]\nnew_hourly = 1000\nwarmed_hourly = 1000\nnew_daily = 2\nwarmed_daily = 2\n",
    );
    let srv = TestServer::start_configured(Erp::start().await, &toml, |c| {
        c.queue.expire_after = HumanDuration::secs(10 * DAY);
    })
    .await;
    // One minute past a UTC midnight of the test clock: no day boundary inside the test.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    srv.running()
        .clock
        .advance(Duration::from_secs(DAY - now % DAY + 60));
    let to: Vec<String> = (0..5).map(|i| format!("user{i}@gmail.com")).collect();
    relay(srv.addr(Listener::Submission), "app@example.test", &to).await;
    let got = peers(&sink, 4).await;
    assert_eq!(
        (count(&got, "127.0.0.1"), count(&got, "127.0.0.2")),
        (2, 2),
        "each IP sends its 2 before anything is held: {got:?}"
    );
    let waiting = eventually(20, "the fifth held", || async {
        let h = held(&srv, "provider daily cap");
        (h.len() == 1).then_some(h)
    })
    .await;
    let reason = waiting[0].last_reply.clone().unwrap_or_default();
    assert!(reason.contains("to gmail today"), "{reason}");
    assert!(reason.contains("all 2 source IPs"), "{reason}");
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let l = [("sending_ip", ip), ("provider", "gmail")];
        assert_eq!(srv.metric(PROVIDER_DAILY_CAP, &l).await, Some(2.0), "{ip}");
        assert_eq!(srv.metric(PROVIDER_DAILY_SENT, &l).await, Some(2.0), "{ip}");
    }
    let d = [
        ("sending_domain", "example.test"),
        ("reason", "provider daily cap"),
    ];
    assert!(srv.metric(WARMING_DEFERRALS, &d).await.is_some());
    assert_eq!(sink.received().len(), 4, "nothing more the same day");
    // The next day the held one goes.
    srv.running().clock.advance(Duration::from_secs(DAY));
    let got = peers(&sink, 5).await;
    for rcpt in &to {
        assert!(got.contains_key(rcpt), "{rcpt} delivered: {got:?}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_bind_that_fails_at_run_time_falls_back_to_the_pools_next_ip() {
    use mxgate::envelope::{Destination, ListenerKind, QueueId, Stream};
    use mxgate::queue::{QueuedMessage, Recipient};
    use std::sync::Arc;

    let sink = sink().await;
    // The probe finds every address of this pool: nothing is known missing at the start.
    let toml = relay_toml(
        &sink,
        "[streams]\ntransactional_source_ips = [{ ip = \"127.0.0.1\" }]",
    );
    let config = mxgate::config::Config::from_toml(&toml, std::path::Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let relay = mxgate::delivery::relay::Relay::new(
        Arc::new(config.clone()),
        None,
        mxgate::routing::token::TokenKey::new([7; 32]),
        Arc::new(mxgate::routing::Router::new(&config)),
        mxgate::clock::Clock::system(),
        mxgate::delivery::oauth2::Tokens::default(),
    );
    let to = "reader@remote.test";
    let msg = QueuedMessage {
        id: QueueId::generate(),
        received_ms: 0,
        listener: ListenerKind::Submission,
        peer_ip: "127.0.0.1".parse().expect("ip"),
        helo: "app.internal".into(),
        mail_from: "app@example.test".into(),
        size: 0,
        recipients: vec![Recipient {
            address: to.into(),
            dest: Destination::Relay,
            state: RcptState::Queued,
            attempts: 0,
            next_attempt_ms: 0,
            last_reply: None,
            category: None,
            updated_ms: 0,
            esmtp: Default::default(),
        }],
        stream: Stream::Transactional,
        esmtp: Default::default(),
    };
    let mut plan = relay.plan(&msg, to, None).await.expect("planned");
    assert_eq!(
        plan.sources,
        ["127.0.0.1".parse::<std::net::IpAddr>().expect("ip")]
    );
    // An address that left the host after the start, first in the domain's order.
    let gone: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
    plan.sources.insert(0, gone);
    plan.use_source(gone);
    let body = b"From: <app@example.test>\r\nSubject: fallback\r\n\r\nHello\r\n";
    let (result, ip) = relay.send(&msg, 0, to, body, &plan).await;
    let reply = result.unwrap_or_else(|e| panic!("sent from the next IP: {e}"));
    assert!(reply.reply.starts_with("250"), "{}", reply.reply);
    assert_eq!(ip.map(|i| i.to_string()).as_deref(), Some("127.0.0.1"));
    assert_eq!(peers(&sink, 1).await[to], "127.0.0.1");
}

/// Trusted relay through the pool 127.0.0.1 + 127.0.0.2 with gmail at `hourly` messages an
/// hour per IP (new or warmed), no daily cap at gmail.
fn hourly_toml(sink: &Sink, hourly: u64) -> String {
    relay_toml(
        sink,
        &format!(
            "[streams]\ntransactional_source_ips = [{{ ip = \"127.0.0.1\" }}, {{ ip = \"127.0.0.2\" }}]\n\
             [warming]\nenabled = true\n\
             [warming.providers.gmail]\nnew_hourly = {hourly}\nwarmed_hourly = {hourly}\n"
        ),
    )
}

async fn start_pool(toml: &str) -> TestServer {
    TestServer::start_configured(Erp::start().await, toml, |c| {
        c.queue.expire_after = HumanDuration::secs(10 * DAY);
    })
    .await
}

/// Steps `srv`'s clock to 20 minutes past the next full hour (no hour boundary inside the
/// test); returns the step, to make again after a restart (which starts a fresh clock).
fn align_hour(srv: &TestServer) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let step = Duration::from_secs(HOUR - now % HOUR + 20 * 60);
    srv.running().clock.advance(step);
    step
}

fn gmail(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@gmail.com")).collect()
}

fn rate_labels(ip: &str) -> [(&'static str, &str); 3] {
    [
        ("sending_domain", "example.test"),
        ("provider", "gmail"),
        ("sending_ip", ip),
    ]
}

#[tokio::test]
async fn each_pool_ip_has_its_own_hourly_rate_at_a_provider_kept_across_a_restart() {
    let sink = sink().await;
    let mut srv = start_pool(&hourly_toml(&sink, 2)).await;
    let step = align_hour(&srv);
    relay(
        srv.addr(Listener::Submission),
        "app@example.test",
        &gmail("a", 5),
    )
    .await;
    let got = peers(&sink, 4).await;
    assert_eq!(
        (count(&got, POOL[0]), count(&got, POOL[1])),
        (2, 2),
        "2 an hour from each IP: {got:?}"
    );
    let waiting = eventually(20, "the fifth held", || async {
        let h = held(&srv, "provider rate");
        (h.len() == 1).then_some(h)
    })
    .await;
    let reason = waiting[0].last_reply.clone().unwrap_or_default();
    assert!(reason.contains("to gmail in use"), "{reason}");
    assert!(reason.contains("all 2 source IPs"), "{reason}");
    for ip in POOL {
        let l = rate_labels(ip);
        assert_eq!(srv.metric(PROVIDER_HOURLY_CAP, &l).await, Some(2.0), "{ip}");
        assert_eq!(
            srv.metric(PROVIDER_HOURLY_SENT, &l).await,
            Some(2.0),
            "{ip}"
        );
    }
    assert_eq!(sink.received().len(), 4);

    // Same hour after a restart: each IP's two sends still count, a new one is held too.
    srv.restart().await;
    srv.running().clock.advance(step);
    relay(
        srv.addr(Listener::Submission),
        "app@example.test",
        &gmail("b", 1),
    )
    .await;
    eventually(20, "the new one held as well", || async {
        (held(&srv, "provider rate").len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        sink.received().len(),
        4,
        "a fresh limiter would have let one out"
    );
    // Half an hour later one cell is free on each IP: both held go, one from each.
    srv.running().clock.advance(Duration::from_secs(HOUR / 2));
    let got = peers(&sink, 6).await;
    assert_eq!(
        (count(&got, POOL[0]), count(&got, POOL[1])),
        (3, 3),
        "{got:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_throttle_on_one_pool_ip_leaves_the_other_ips_rate_unchanged() {
    let sink = sink().await;
    let srv = start_pool(&hourly_toml(&sink, 4)).await;
    align_hour(&srv);
    // The first attempt is told to slow down.
    sink.script_rcpt(&["421 4.7.0 Try again later"]);
    relay(
        srv.addr(Listener::Submission),
        "app@example.test",
        &gmail("a", 1),
    )
    .await;
    let throttled = eventually(20, "one IP throttled", || async {
        for ip in POOL {
            if srv.metric(PROVIDER_THROTTLE_LEVEL, &rate_labels(ip)).await == Some(1.0) {
                return Some(ip);
            }
        }
        None
    })
    .await;
    let other = POOL.into_iter().find(|ip| *ip != throttled).expect("other");
    // The throttled IP: cap 4 halved to 2, one cell used by the 421'd attempt → one more.
    // The other keeps its 4.
    relay(
        srv.addr(Listener::Submission),
        "app@example.test",
        &gmail("b", 6),
    )
    .await;
    let got = peers(&sink, 5).await;
    eventually(20, "the sixth held", || async {
        (!held(&srv, "provider rate").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        (count(&got, throttled), count(&got, other)),
        (1, 4),
        "{got:?}"
    );
    assert_eq!(sink.received().len(), 5);
    for (ip, cap) in [(throttled, 2.0), (other, 4.0)] {
        let got = srv.metric(PROVIDER_HOURLY_CAP, &rate_labels(ip)).await;
        assert_eq!(got, Some(cap), "{ip}");
    }
    assert_eq!(
        srv.metric(PROVIDER_THROTTLE_LEVEL, &rate_labels(other))
            .await,
        Some(0.0)
    );
    srv.shutdown().await;
}
