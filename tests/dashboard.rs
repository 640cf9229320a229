//! The bounce statistics end to end: real relayed traffic (deliveries and refusals of
//! several categories, providers and two sending domains) → `/api/bounces/summary` and
//! `/api/bounces/classification` with their filters, across a restart, and the
//! `/dashboard` page in headless Chromium showing the same figures.

mod common;
mod traffic;

use std::path::Path;

use common::TestServer;
use serde_json::Value;

async fn get_json(srv: &TestServer, path: &str) -> Value {
    let (status, body) = srv.admin_get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

async fn start_with_traffic(extra: &str) -> TestServer {
    let sink = traffic::sink().await;
    let srv = TestServer::start(&traffic::relay_toml(&sink, extra)).await;
    traffic::record(&srv, &sink, traffic::MIX).await;
    // The sink only lives for the traffic; the figures come from the store.
    drop(sink);
    srv
}

#[tokio::test]
async fn summary_and_classification_count_the_recorded_traffic_and_filter_it() {
    let mut srv = start_with_traffic("").await;
    let s = get_json(&srv, "/api/bounces/summary").await;
    assert_eq!(s["delivered"], 5, "{s}");
    assert_eq!(s["permanent_bounce"], 4, "{s}");
    assert_eq!(s["esp_blocks"], 1, "{s}");
    assert_eq!(s["delivery_rate"], 55.56, "{s}");
    assert_eq!(s["permanent_bounce_rate"], 44.44, "{s}");

    let c = get_json(&srv, "/api/bounces/classification").await;
    let rows = c["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{c}");
    let top = &rows[0];
    assert_eq!(top["provider"], "gmail");
    assert_eq!(top["category"], "Invalid address");
    assert_eq!(top["reply_code"], "550");
    assert_eq!(top["status"], "5.1.1");
    assert_eq!(top["count"], 2);
    assert_eq!(top["percent"], 50.0);
    assert!(
        top["definition"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist")
    );
    let cats: Vec<&str> = rows.iter().filter_map(|r| r["category"].as_str()).collect();
    assert!(
        cats.contains(&"Mailbox Full") && cats.contains(&"Blocked"),
        "{cats:?}"
    );

    let y = get_json(&srv, "/api/bounces/summary?provider=yahoo").await;
    assert_eq!(
        (y["delivered"].as_u64(), y["permanent_bounce"].as_u64()),
        (Some(1), Some(1))
    );
    let y = get_json(&srv, "/api/bounces/classification?provider=Yahoo").await;
    assert_eq!(y["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(y["rows"][0]["category"], "Mailbox Full");
    let shop = get_json(
        &srv,
        "/api/bounces/summary?sending_domain=shop.test&email_type=transactional",
    )
    .await;
    assert_eq!(
        (
            shop["delivered"].as_u64(),
            shop["permanent_bounce"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let none = get_json(&srv, "/api/bounces/summary?sending_ip=192.0.2.9").await;
    assert_eq!(none["delivered"], 0);
    let past = get_json(&srv, "/api/bounces/summary?from=2020-01-01&to=2020-01-31").await;
    assert_eq!(
        (past["delivered"].as_u64(), past["delivery_rate"].as_f64()),
        (Some(0), Some(0.0))
    );
    let (status, body) = srv.admin_get("/api/bounces/summary?from=last-week").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("from"), "{body}");

    // Hourly buckets are on disk: the same figures after a restart.
    srv.restart().await;
    let again = get_json(&srv, "/api/bounces/summary").await;
    assert_eq!(again["delivered"], 5);
    assert_eq!(again["permanent_bounce"], 4);
    srv.shutdown().await;
}

#[tokio::test]
async fn bounce_api_requires_the_admin_token_and_the_page_does_not() {
    let srv = TestServer::start_configured(common::Erp::start().await, "", |c| {
        c.admin.token = mxgate::config::Secret::new("adm1n");
    })
    .await;
    assert_eq!(srv.admin_get("/api/bounces/summary").await.0, 401);
    let (status, body) = common::erp::http_request_with(
        "GET",
        &format!("{}/api/bounces/classification", srv.admin_url()),
        "",
        &[("Authorization", "Bearer adm1n")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, page) = srv.admin_get("/dashboard").await;
    assert_eq!(status, 200);
    assert!(page.contains("Bounce Classification") && !page.contains("<script src="));
    srv.shutdown().await;
}

// ---- headless Chromium ------------------------------------------------------------------

/// The page in this test's window (1280×1500).
async fn browse(bin: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    common::browser::browse(bin, profile, url, 1500, args).await
}

/// Text of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = dom
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    dom[start..]
        .split('<')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `data-count` values of the classification table's rows, in page order.
fn table_counts(dom: &str) -> Vec<u64> {
    dom.split("data-count=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

fn categories(dom: &str) -> Vec<String> {
    dom.split("data-category=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn dashboard_in_headless_chromium_shows_the_api_figures_and_a_filter_changes_the_table() {
    let Some(bin) = common::browser::chromium() else {
        return;
    };
    let srv = start_with_traffic("").await;
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("{}/dashboard", srv.admin_url());

    let dom = browse(&bin, profile.path(), &url, &["--dump-dom"]).await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "page did not load its data:\n{dom}"
    );
    let s = get_json(&srv, "/api/bounces/summary").await;
    assert_eq!(text_of(&dom, "fig-delivered"), s["delivered"].to_string());
    assert_eq!(
        text_of(&dom, "fig-permanent_bounce"),
        s["permanent_bounce"].to_string()
    );
    assert_eq!(text_of(&dom, "fig-esp_blocks"), s["esp_blocks"].to_string());
    assert_eq!(
        text_of(&dom, "fig-delivery_rate"),
        format!("{:.2}%", s["delivery_rate"].as_f64().expect("rate"))
    );
    assert_eq!(
        text_of(&dom, "fig-permanent_bounce_rate"),
        format!("{:.2}%", s["permanent_bounce_rate"].as_f64().expect("rate"))
    );
    let api_rows = get_json(&srv, "/api/bounces/classification").await;
    let api_counts: Vec<u64> = api_rows["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["count"].as_u64())
        .collect();
    assert_eq!(
        table_counts(&dom),
        api_counts,
        "table sorted by count as the API"
    );
    assert!(dom.contains("data-delivered=\""), "chart drawn");
    assert!(dom.contains("Check blocklists"), "category fix tips shown");

    // The provider filter (what the select's change handler puts in the URL).
    let yahoo = browse(
        &bin,
        profile.path(),
        &format!("{url}?provider=yahoo"),
        &["--dump-dom"],
    )
    .await;
    assert_eq!(categories(&yahoo), ["Mailbox Full"]);
    assert_ne!(table_counts(&yahoo), table_counts(&dom));
    assert_eq!(text_of(&yahoo, "fig-delivered"), "1");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &bin,
        profile.path(),
        &url,
        &[&format!("--screenshot={}", shot.display())],
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
    srv.shutdown().await;
}
