//! Prometheus integration: `conf/prometheus/` rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`), and a real scrape of a server that relayed real
//! traffic has the SPEC metrics and passes `promtool check metrics`. Without promtool
//! (Debian package `prometheus`) the promtool steps say so and are skipped.

mod common;
mod traffic;

use std::path::Path;
use std::process::{Command, Stdio};

use common::TestServer;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "SKIPPED: promtool is not installed (apt-get install prometheus); promtool checks not run"
        );
    }
    found.then_some("promtool")
}

fn conf(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/prometheus")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let Some(tool) = promtool() else { return };
    let out = Command::new(tool)
        .args(["check", "rules"])
        .arg(conf("rules/mxgate.rules.yml"))
        .arg(conf("rules/mxgate.alerts.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(tool)
        .args(["test", "rules"])
        .arg(conf("tests/mxgate.test.yml"))
        .output()
        .expect("run promtool");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("SUCCESS"), "{text}");
    let out = Command::new(tool)
        .args(["check", "config"])
        .arg(conf("prometheus.yml"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_real_scrape_has_the_spec_metrics_and_passes_promtool_check_metrics() {
    let sink = traffic::sink().await;
    let srv = TestServer::start(&traffic::relay_toml(&sink, "")).await;
    traffic::record(&srv, &sink, traffic::MIX).await;
    let (status, scrape) = srv.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for want in [
        r#"mxgate_messages_delivered_total{sending_domain="example.test",provider="gmail",email_type="transactional",sending_ip="127.0.0.1"} 2"#,
        r#"mxgate_messages_delivered_total{sending_domain="shop.test",provider="yahoo",email_type="transactional",sending_ip="127.0.0.1"} 1"#,
        // Synchronous 5xx: counted under the IP the attempt left from, like deliveries.
        r#"mxgate_bounces_total{category="Invalid address",provider="gmail",sending_domain="example.test",email_type="transactional",sending_ip="127.0.0.1",kind="permanent"} 2"#,
        r#"mxgate_bounces_total{category="Mailbox Full",provider="yahoo",sending_domain="shop.test""#,
        r#"mxgate_esp_blocks_total{provider="microsoft"} 1"#,
        r#"mxgate_delivery_attempts_total{result="sent",provider="gmail"} 3"#,
        r#"mxgate_delivery_attempts_total{result="failed",provider="gmail"} 2"#,
        r#"mxgate_delivery_attempts_total{result="failed",provider="microsoft"} 1"#,
        "mxgate_delivery_duration_seconds_bucket{le=",
        "mxgate_delivery_duration_seconds_count 9",
        r#"mxgate_queue_messages{state="sent"}"#,
        "# TYPE mxgate_messages_delivered_total counter",
    ] {
        assert!(scrape.contains(want), "missing {want}\n{scrape}");
    }
    srv.shutdown().await;

    common::promtool_check_metrics(&scrape);
}

/// Every series the Grafana dashboard and the alerts query is a metric mxgate exports or a
/// series the recording rules produce (a renamed metric would otherwise go unnoticed).
#[test]
fn grafana_and_alert_queries_use_only_exported_metrics_and_recorded_series() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("conf/prometheus/rules/mxgate.rules.yml"))
        .expect("rules");
    let alerts = std::fs::read_to_string(root.join("conf/prometheus/rules/mxgate.alerts.yml"))
        .expect("alerts");
    let mut known: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    use mxgate::metrics::*;
    for m in [
        INBOUND_MESSAGES,
        INBOUND_RECIPIENTS,
        SMTP_SESSIONS,
        SMTP_CONNECTIONS,
        AUTH_RESULTS,
        DELIVERY_ATTEMPTS,
        DELIVERY_DURATION,
        MESSAGES_DELIVERED,
        BOUNCES,
        ESP_BLOCKS,
        QUEUE_MESSAGES,
        DNSSEC_VALIDATING,
    ] {
        known.push(m.to_string());
    }
    let grafana: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("conf/grafana/mxgate.json")).expect("grafana json"),
    )
    .expect("grafana dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&grafana, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs.push(rules);
    exprs.push(alerts);
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if !word.contains("mxgate_") {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .filter(|b| known.iter().any(|k| k == b))
                .unwrap_or(word);
            assert!(
                known.iter().any(|k| k == base),
                "{word} is neither exported nor recorded"
            );
        }
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
