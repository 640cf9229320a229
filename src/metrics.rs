//! Every metric name, its labels and description, and typed functions to record them.
//!
//! Each `Server` owns its own Prometheus recorder (no global recorder: several servers run
//! in one test process), so recording goes through a cloned [`Metrics`] handle. Label values
//! come from closed sets (`&'static str` chosen by the caller from enums' `as_label()`), so
//! cardinality is bounded.

use std::sync::Arc;

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub const INBOUND_MESSAGES: &str = "mxgate_inbound_messages_total";
pub const INBOUND_RECIPIENTS: &str = "mxgate_inbound_recipients_total";
pub const SMTP_SESSIONS: &str = "mxgate_smtp_sessions_total";
pub const SMTP_CONNECTIONS: &str = "mxgate_smtp_connections";
pub const AUTH_RESULTS: &str = "mxgate_auth_results_total";
pub const DELIVERY_ATTEMPTS: &str = "mxgate_delivery_attempts_total";
pub const DELIVERY_DURATION: &str = "mxgate_delivery_duration_seconds";
pub const MESSAGES_DELIVERED: &str = "mxgate_messages_delivered_total";
pub const BOUNCES: &str = "mxgate_bounces_total";
pub const ESP_BLOCKS: &str = "mxgate_esp_blocks_total";
pub const QUEUE_MESSAGES: &str = "mxgate_queue_messages";
pub const STORE_COMMITS: &str = "mxgate_store_commits_total";
pub const STORE_COMMIT_BATCH: &str = "mxgate_store_commit_batch_size";

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        INBOUND_MESSAGES,
        "Messages offered on an SMTP listener, by result (accepted|rejected|tempfail) and reason",
    ),
    (
        INBOUND_RECIPIENTS,
        "RCPT commands by result (accepted|rejected) and reason",
    ),
    (SMTP_SESSIONS, "SMTP sessions opened, by listener"),
    (SMTP_CONNECTIONS, "SMTP sessions open now, by listener"),
    (
        AUTH_RESULTS,
        "Inbound SPF/DKIM/DMARC/ARC/iprev results by method and result",
    ),
    (
        DELIVERY_ATTEMPTS,
        "Delivery attempts by result (sent|deferred|failed) and provider/route kind",
    ),
    (
        DELIVERY_DURATION,
        "Time from a delivery attempt's start to its outcome",
    ),
    (MESSAGES_DELIVERED, "Recipients delivered"),
    (
        BOUNCES,
        "Bounces (DSNs received and synchronous 5xx) by category and kind",
    ),
    (ESP_BLOCKS, "Blocks enforced by mailbox providers"),
    (QUEUE_MESSAGES, "Recipients in the queue by state"),
    (STORE_COMMITS, "Group commits (one WAL fsync each)"),
    (STORE_COMMIT_BATCH, "Writes sharing one WAL fsync"),
];

/// A server's metrics handle: cheap to clone, records into that server's registry only.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
            .expect("bucket list is non-empty")
            .build_recorder();
        for (name, help) in DESCRIPTIONS {
            recorder.describe_counter((*name).into(), None, (*help).into());
        }
        let handle = recorder.handle();
        Metrics {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let key = key(name, labels);
        self.recorder
            .register_counter(&key, &metadata())
            .increment(n);
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &metadata())
            .set(v);
    }

    fn gauge_add(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &metadata())
            .increment(v);
    }

    pub fn inbound_message(&self, result: &'static str, reason: &'static str) {
        self.counter(
            INBOUND_MESSAGES,
            &[("result", result), ("reason", reason)],
            1,
        );
    }

    pub fn inbound_recipient(&self, result: &'static str, reason: &'static str) {
        self.counter(
            INBOUND_RECIPIENTS,
            &[("result", result), ("reason", reason)],
            1,
        );
    }

    pub fn session_opened(&self, listener: &'static str) {
        self.counter(SMTP_SESSIONS, &[("listener", listener)], 1);
        self.gauge_add(SMTP_CONNECTIONS, &[("listener", listener)], 1.0);
    }

    pub fn session_closed(&self, listener: &'static str) {
        self.gauge_add(SMTP_CONNECTIONS, &[("listener", listener)], -1.0);
    }

    pub fn auth_result(&self, method: &'static str, result: &'static str) {
        self.counter(AUTH_RESULTS, &[("method", method), ("result", result)], 1);
    }

    /// One delivery attempt's outcome; `provider` is the provider label or the route kind
    /// (`http`, `maildir`) for ERP deliveries.
    pub fn delivery_attempt(&self, result: &'static str, provider: &str, seconds: f64) {
        self.counter(
            DELIVERY_ATTEMPTS,
            &[("result", result), ("provider", provider)],
            1,
        );
        self.recorder
            .register_histogram(&Key::from_name(DELIVERY_DURATION), &metadata())
            .record(seconds);
    }

    pub fn delivered(
        &self,
        sending_domain: &str,
        provider: &str,
        email_type: &str,
        sending_ip: &str,
    ) {
        self.counter(
            MESSAGES_DELIVERED,
            &[
                ("sending_domain", sending_domain),
                ("provider", provider),
                ("email_type", email_type),
                ("sending_ip", sending_ip),
            ],
            1,
        );
    }

    /// A bounce; `labels` = category, provider, sending_domain, email_type, sending_ip, kind.
    pub fn bounce(&self, labels: &BounceLabels<'_>) {
        self.counter(
            BOUNCES,
            &[
                ("category", labels.category),
                ("provider", labels.provider),
                ("sending_domain", labels.sending_domain),
                ("email_type", labels.email_type),
                ("sending_ip", labels.sending_ip),
                ("kind", labels.kind),
            ],
            1,
        );
    }

    pub fn esp_block(&self, provider: &str) {
        self.counter(ESP_BLOCKS, &[("provider", provider)], 1);
    }

    pub fn queue_gauge(&self, state: &'static str, n: u64) {
        self.gauge(QUEUE_MESSAGES, &[("state", state)], n as f64);
    }

    pub fn store_commit(&self, batch: usize) {
        self.counter(STORE_COMMITS, &[], 1);
        self.recorder
            .register_histogram(&Key::from_name(STORE_COMMIT_BATCH), &metadata())
            .record(batch as f64);
    }
}

/// Labels of `mxgate_bounces_total`.
pub struct BounceLabels<'a> {
    pub category: &'a str,
    pub provider: &'a str,
    pub sending_domain: &'a str,
    pub email_type: &'a str,
    pub sending_ip: &'a str,
    /// `permanent` | `transient`.
    pub kind: &'a str,
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_have_separate_registries() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.inbound_message("accepted", "ok");
        assert!(
            a.render()
                .contains("mxgate_inbound_messages_total{result=\"accepted\",reason=\"ok\"} 1")
        );
        assert!(!b.render().contains("mxgate_inbound_messages_total{"));
    }
}
