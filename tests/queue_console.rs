//! The queue console (`GET /queue`, issue 15 item 7) in headless Chromium against a real
//! server: the list with its filters, a message's detail (recipients, attempts, last reply,
//! route, authentication verdict) and the actions it offers, a screenshot in the test's
//! temp dir; and the API the page uses (filters, `.eml`).

mod common;

use std::path::Path;

use common::{TestServer, eventually, message};
use mxgate::queue::RcptState;

/// The page in this test's window (1280×1000).
async fn browse(bin: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    common::browser::browse(bin, profile, url, 1000, args).await
}

/// The `data-id`s of the list's rows, in page order.
fn row_ids(dom: &str) -> Vec<String> {
    dom.split("<tr class=\"msg\" data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = dom
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no #{id}"));
    dom[start..]
        .split('<')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// One delivered inbound message and one held (the ERP refused it at first).
async fn two_messages(srv: &TestServer) -> (String, String) {
    srv.send_inbound(
        "alice@client.test",
        &["sales@example.test"],
        &message("console-sent", "x"),
    )
    .await
    .expect_code(250);
    let q = srv.running().queue.clone();
    let sent = eventually(10, "first delivered", || async {
        q.list(Some(RcptState::Sent), 10).into_iter().next()
    })
    .await;
    srv.erp.answer(503);
    srv.send_inbound(
        "bob@other.test",
        &["support@example.test"],
        &message("console-held", "y"),
    )
    .await
    .expect_code(250);
    let deferred = eventually(10, "second deferred", || async {
        q.list(Some(RcptState::Deferred), 10)
            .into_iter()
            .find(|m| m.recipients[0].attempts >= 1)
    })
    .await;
    assert_eq!(q.hold(deferred.id).await.expect("hold"), 1);
    (sent.id.to_string(), deferred.id.to_string())
}

#[tokio::test]
async fn queue_console_lists_filters_and_shows_a_message_with_its_actions() {
    let Some(bin) = common::browser::chromium() else {
        return;
    };
    let srv = TestServer::start("").await;
    let (sent, held) = two_messages(&srv).await;
    let profile = tempfile::tempdir().expect("profile");
    let url = format!("{}/queue", srv.admin_url());

    let all = browse(&bin, profile.path(), &url, &["--dump-dom"]).await;
    assert!(
        all.contains("data-loaded=\"true\""),
        "page did not load:\n{all}"
    );
    let mut ids = row_ids(&all);
    ids.sort();
    let mut want = vec![sent.clone(), held.clone()];
    want.sort();
    assert_eq!(ids, want);
    for (query, expect) in [
        ("state=held", &held),
        ("sender=bob", &held),
        ("recipient=sales", &sent),
        ("listener=inbound&domain=example.test&state=sent", &sent),
    ] {
        let dom = browse(
            &bin,
            profile.path(),
            &format!("{url}?{query}"),
            &["--dump-dom"],
        )
        .await;
        assert_eq!(row_ids(&dom), std::slice::from_ref(expect), "{query}");
    }
    let none = browse(
        &bin,
        profile.path(),
        &format!("{url}?from=2020-01-01&to=2020-01-02"),
        &["--dump-dom"],
    )
    .await;
    assert!(row_ids(&none).is_empty() && none.contains("No message matches"));

    // The held message: detail, its verdict and route, and the actions that apply.
    let detail = browse(
        &bin,
        profile.path(),
        &format!("{url}?id={held}"),
        &["--dump-dom"],
    )
    .await;
    assert_eq!(text_of(&detail, "d-id"), held);
    assert_eq!(text_of(&detail, "d-sender"), "bob@other.test");
    assert!(
        text_of(&detail, "d-auth").contains("spf="),
        "auth verdict shown"
    );
    assert!(
        detail.contains("data-rcpt=\"support@example.test\" data-state=\"held\""),
        "{detail}"
    );
    assert!(detail.contains("<td>crm</td>"), "route shown");
    assert!(detail.contains("HTTP 503"), "last reply shown");
    for action in ["cancel", "release", "eml"] {
        assert!(
            detail.contains(&format!("data-action=\"{action}\"")),
            "{action}"
        );
    }
    assert!(
        !detail.contains("data-action=\"redeliver\""),
        "not delivered yet"
    );
    let done = browse(
        &bin,
        profile.path(),
        &format!("{url}?id={sent}"),
        &["--dump-dom"],
    )
    .await;
    assert!(
        done.contains("data-action=\"redeliver\"") && !done.contains("data-action=\"release\"")
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("queue-console.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &bin,
        profile.path(),
        &format!("{url}?id={held}"),
        &[&format!("--screenshot={}", shot.display())],
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("queue console screenshot: {}", shot.display());
    srv.shutdown().await;
}

#[tokio::test]
async fn the_api_behind_the_console_filters_and_serves_the_eml() {
    let srv = TestServer::start("").await;
    let (sent, held) = two_messages(&srv).await;
    let (status, body) = srv
        .admin_get("/api/queue?sender=ALICE&listener=inbound")
        .await;
    assert_eq!(status, 200);
    assert!(body.contains(&sent) && !body.contains(&held), "{body}");
    let (status, body) = srv.admin_get("/api/queue?from=yesterday").await;
    assert_eq!(status, 400, "{body}");
    let (status, eml) = srv.admin_get(&format!("/api/queue/{sent}/eml")).await;
    assert_eq!(status, 200);
    assert!(
        eml.contains("Subject: console-sent\r\n") && eml.contains("X-Mxgate-Auth:"),
        "{eml}"
    );
    let (status, show) = srv.admin_get(&format!("/api/queue/{held}")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&show).expect("json");
    assert!(v["auth"].as_str().unwrap_or("").contains("spf="), "{v}");
    assert_eq!(srv.admin_get("/queue").await.0, 200);
    srv.shutdown().await;
}
