//! Every metric name, its labels and description, and typed functions to record them.
//!
//! Each `Server` owns its own Prometheus recorder (no global recorder: several servers run
//! in one test process), so recording goes through a cloned [`Metrics`] handle. Label values
//! come from closed sets (`&'static str` chosen by the caller from enums' `as_label()`), so
//! cardinality is bounded.

mod cluster;
mod dnssec;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use cluster::{CLUSTER_PENDING, CLUSTER_REDIS_UP, CLUSTER_REPLAYED, CLUSTER_TRANSITIONS};
pub use dnssec::DNSSEC_VALIDATING;

pub const INBOUND_MESSAGES: &str = "mxgate_inbound_messages_total";
pub const INBOUND_RECIPIENTS: &str = "mxgate_inbound_recipients_total";
pub const SMTP_SESSIONS: &str = "mxgate_smtp_sessions_total";
pub const SMTP_CONNECTIONS: &str = "mxgate_smtp_connections";
pub const SMTP_POLICY: &str = "mxgate_smtp_policy_total";
pub const AUTH_RESULTS: &str = "mxgate_auth_results_total";
pub const DELIVERY_ATTEMPTS: &str = "mxgate_delivery_attempts_total";
pub const DELIVERY_DURATION: &str = "mxgate_delivery_duration_seconds";
pub const MESSAGES_DELIVERED: &str = "mxgate_messages_delivered_total";
pub const BOUNCES: &str = "mxgate_bounces_total";
pub const ESP_BLOCKS: &str = "mxgate_esp_blocks_total";
pub const DOMAIN_SUSPENDED: &str = "mxgate_sending_domain_suspended";
/// Live reloads (`SIGHUP`, `POST /api/reload`) by result (`ok` | `error`).
pub const CONFIG_RELOADS: &str = "mxgate_config_reloads_total";
pub const QUEUE_MESSAGES: &str = "mxgate_queue_messages";
/// Storage (issue 11): what `queue.max_messages`, `max_bytes` and `min_free_disk` compare.
pub const QUEUE_BYTES: &str = "mxgate_queue_bytes";
pub const QUEUE_BACKLOG: &str = "mxgate_queue_backlog_messages";
pub const DISK_FREE: &str = "mxgate_disk_free_bytes";
pub const QUEUE_PURGED: &str = "mxgate_queue_purged_total";
pub const STORE_COMMITS: &str = "mxgate_store_commits_total";
pub const STORE_COMMIT_BATCH: &str = "mxgate_store_commit_batch_size";
/// Warming (issue 6): per sending domain, and per sending domain × provider.
pub const WARMING_DAY: &str = "mxgate_warming_day";
pub const WARMING_DAILY_CAP: &str = "mxgate_warming_daily_cap";
pub const WARMING_DAILY_SENT: &str = "mxgate_warming_daily_sent";
pub const WARMING_IP_DAY: &str = "mxgate_warming_ip_day";
pub const WARMING_IP_DAILY_CAP: &str = "mxgate_warming_ip_daily_cap";
pub const WARMING_IP_DAILY_SENT: &str = "mxgate_warming_ip_daily_sent";
pub const WARMING_DEFERRALS: &str = "mxgate_warming_deferrals_total";
pub const PROVIDER_HOURLY_CAP: &str = "mxgate_provider_hourly_cap";
pub const PROVIDER_HOURLY_SENT: &str = "mxgate_provider_hourly_sent";
/// Per source IP × provider daily caps (issue 17 item 7).
pub const PROVIDER_DAILY_CAP: &str = "mxgate_provider_daily_cap";
pub const PROVIDER_DAILY_SENT: &str = "mxgate_provider_daily_sent";
/// Spam complaints (ARF feedback reports) by sending domain and provider (SPEC).
pub const COMPLAINTS: &str = "mxgate_complaints_total";
pub const PROVIDER_THROTTLE_LEVEL: &str = "mxgate_provider_throttle_level";
pub const PROVIDER_THROTTLE_EVENTS: &str = "mxgate_provider_throttle_events_total";
pub const SPAM_RESULTS: &str = "mxgate_spam_results_total";
pub const SPAM_SCAN: &str = "mxgate_spam_scan_seconds";
/// Direct-MX TLS sessions (issue 17): by TLS policy and RFC 8460 result.
pub const OUTBOUND_TLS_SESSIONS: &str = "mxgate_outbound_tls_sessions_total";

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
        SMTP_POLICY,
        "Client checks that acted (pregreet, dnsbl, rate limits), by check and action",
    ),
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
    (
        DOMAIN_SUSPENDED,
        "1 while a sending domain is suspended for its bounce or complaint rate, else 0",
    ),
    (
        CONFIG_RELOADS,
        "Config reloads by result (ok = in force, error = refused, the running config kept)",
    ),
    (QUEUE_MESSAGES, "Recipients in the queue by state"),
    (
        QUEUE_BYTES,
        "Bytes of the messages not yet done (what queue.max_bytes limits)",
    ),
    (
        QUEUE_BACKLOG,
        "Messages not yet done: a recipient queued or deferred, or an unread DSN (queue.max_messages)",
    ),
    (
        DISK_FREE,
        "Free bytes on the data directory's filesystem (queue.min_free_disk)",
    ),
    (
        QUEUE_PURGED,
        "Finished messages deleted after queue.retention",
    ),
    (STORE_COMMITS, "Group commits (one WAL fsync each)"),
    (STORE_COMMIT_BATCH, "Writes sharing one WAL fsync"),
    (
        WARMING_DAY,
        "Day in warming of a sending domain (1 = first day)",
    ),
    (
        WARMING_DAILY_CAP,
        "Messages a sending domain may send today (inf = full quota)",
    ),
    (WARMING_DAILY_SENT, "Messages a sending domain sent today"),
    (WARMING_IP_DAY, "Day in warming of a source IP"),
    (
        WARMING_IP_DAILY_CAP,
        "Messages a source IP may send today (inf = full quota)",
    ),
    (WARMING_IP_DAILY_SENT, "Messages a source IP sent today"),
    (
        WARMING_DEFERRALS,
        "Recipients held for the next window, by reason (warming cap|provider daily cap|provider rate)",
    ),
    (
        PROVIDER_DAILY_CAP,
        "Messages per UTC day a source IP may send to a provider",
    ),
    (
        PROVIDER_DAILY_SENT,
        "Messages a source IP sent to a provider today",
    ),
    (
        COMPLAINTS,
        "Spam complaints (ARF feedback reports) received, by sending domain and provider",
    ),
    (
        PROVIDER_HOURLY_CAP,
        "Messages per hour a sending domain may send to a provider now (after throttling)",
    ),
    (
        PROVIDER_HOURLY_SENT,
        "Messages a sending domain sent to a provider this hour",
    ),
    (
        PROVIDER_THROTTLE_LEVEL,
        "Adaptive throttle: the provider's hourly cap is divided by 2^level (0 = none)",
    ),
    (
        PROVIDER_THROTTLE_EVENTS,
        "Rate-limit replies (421 / 4.7.x) that slowed a provider down",
    ),
    (
        SPAM_RESULTS,
        "Inbound messages scanned by rspamd, by its action (error = no verdict)",
    ),
    (
        SPAM_SCAN,
        "Time one rspamd scan took, failed scans included",
    ),
    (
        OUTBOUND_TLS_SESSIONS,
        "Direct-MX sessions by TLS policy (sts|tlsa|no-policy-found) and result (success or \
         an RFC 8460 result type such as certificate-host-mismatch)",
    ),
];

/// A server's metrics handle: cheap to clone, records into that server's registry only.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    counters: Arc<Handles<Counter>>,
    gauges: Arc<Handles<Gauge>>,
}

/// A series: metric name and label pairs.
type Series = (&'static str, Vec<(&'static str, Box<str>)>);

/// Handles of the series recorded so far. A hit skips building a [`Key`] (a `Vec` and a
/// `String` per label, then an `Arc` of them) and the registry's lookup: together 2% of the
/// session worker's time under inbound load (perf, issue 13). Label values come from closed
/// sets or the config, so the map stays as small as the registry.
struct Handles<T> {
    by_hash: RwLock<HashMap<u64, Vec<(Series, T)>>>,
}

impl<T: Clone> Handles<T> {
    fn new() -> Self {
        Handles {
            by_hash: RwLock::new(HashMap::new()),
        }
    }

    /// The handle of `name{labels}`, registered by `register` the first time.
    fn get(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        register: impl FnOnce() -> T,
    ) -> T {
        let mut h = DefaultHasher::new();
        (name, labels).hash(&mut h);
        let hash = h.finish();
        let same = |(n, l): &Series| {
            *n == name
                && l.len() == labels.len()
                && l.iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && **v == **v2)
        };
        let found = |map: &HashMap<u64, Vec<(Series, T)>>| {
            map.get(&hash)
                .and_then(|list| list.iter().find(|(series, _)| same(series)))
                .map(|(_, handle)| handle.clone())
        };
        if let Some(handle) = found(&self.by_hash.read().unwrap_or_else(PoisonError::into_inner)) {
            return handle;
        }
        let mut map = self.by_hash.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = found(&map) {
            return handle;
        }
        let handle = register();
        let series = (
            name,
            labels.iter().map(|(k, v)| (*k, Box::from(*v))).collect(),
        );
        map.entry(hash).or_default().push((series, handle.clone()));
        handle
    }
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
            counters: Arc::new(Handles::new()),
            gauges: Arc::new(Handles::new()),
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        self.counters
            .get(name, labels, || {
                self.recorder
                    .register_counter(&key(name, labels), &metadata())
            })
            .increment(n);
    }

    fn gauge_handle(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.gauges.get(name, labels, || {
            self.recorder
                .register_gauge(&key(name, labels), &metadata())
        })
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.gauge_handle(name, labels).set(v);
    }

    fn gauge_add(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.gauge_handle(name, labels).increment(v);
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

    /// A connect-time or rate check acted: `check` (pregreet, dnsbl, conn_rate, ...),
    /// `action` (reject, tag, tempfail, allow).
    pub fn smtp_policy(&self, check: &'static str, action: &'static str) {
        self.counter(SMTP_POLICY, &[("check", check), ("action", action)], 1);
    }

    /// One direct-MX session's TLS check: `policy` and `result` (`success` or an RFC 8460
    /// result type), both from closed sets.
    pub fn outbound_tls_session(&self, policy: &'static str, result: &'static str) {
        self.counter(
            OUTBOUND_TLS_SESSIONS,
            &[("policy", policy), ("result", result)],
            1,
        );
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

    pub fn domain_suspended(&self, sending_domain: &str, suspended: bool) {
        self.gauge(
            DOMAIN_SUSPENDED,
            &[("sending_domain", sending_domain)],
            if suspended { 1.0 } else { 0.0 },
        );
    }

    pub fn queue_gauge(&self, state: &'static str, n: u64) {
        self.gauge(QUEUE_MESSAGES, &[("state", state)], n as f64);
    }

    /// Queue usage against its limits; free space is left out while it is unknown.
    pub fn storage(&self, backlog: u64, bytes: u64, disk_free: Option<u64>) {
        self.gauge(QUEUE_BACKLOG, &[], backlog as f64);
        self.gauge(QUEUE_BYTES, &[], bytes as f64);
        if let Some(free) = disk_free {
            self.gauge(DISK_FREE, &[], free as f64);
        }
    }

    pub fn queue_purged(&self, n: u64) {
        self.counter(QUEUE_PURGED, &[], n);
    }

    /// Warming state of a sending domain (issue 6 §8): day in warming, daily cap (`inf` =
    /// full quota) and messages taken today.
    pub fn warming_day(&self, domain: &str, day: u64, cap: Option<u64>, sent: u64) {
        let l = [("sending_domain", domain)];
        self.gauge(WARMING_DAY, &l, day as f64);
        self.gauge(
            WARMING_DAILY_CAP,
            &l,
            cap.map_or(f64::INFINITY, |c| c as f64),
        );
        self.gauge(WARMING_DAILY_SENT, &l, sent as f64);
    }

    /// Warming state of a source IP: day in warming, daily cap, messages sent today.
    pub fn warming_ip(&self, ip: &str, day: u64, cap: Option<u64>, sent: u64) {
        let l = [("sending_ip", ip)];
        self.gauge(WARMING_IP_DAY, &l, day as f64);
        self.gauge(
            WARMING_IP_DAILY_CAP,
            &l,
            cap.map_or(f64::INFINITY, |c| c as f64),
        );
        self.gauge(WARMING_IP_DAILY_SENT, &l, sent as f64);
    }

    /// A source IP's daily cap at a provider and today's use of it.
    pub fn provider_daily(&self, ip: &str, provider: &str, cap: u64, sent: u64) {
        let l = [("sending_ip", ip), ("provider", provider)];
        self.gauge(PROVIDER_DAILY_CAP, &l, cap as f64);
        self.gauge(PROVIDER_DAILY_SENT, &l, sent as f64);
    }

    /// One spam complaint about mail of `sending_domain` (empty when the report names
    /// none of ours) from a recipient at `provider`.
    pub fn complaint(&self, sending_domain: &str, provider: &str) {
        self.counter(
            COMPLAINTS,
            &[("sending_domain", sending_domain), ("provider", provider)],
            1,
        );
    }

    /// A recipient held back by a cap; `reason` = `warming cap` | `provider daily cap` |
    /// `provider rate`.
    pub fn warming_deferral(&self, domain: &str, reason: &'static str) {
        self.counter(
            WARMING_DEFERRALS,
            &[("sending_domain", domain), ("reason", reason)],
            1,
        );
    }

    /// A provider's hourly cap in effect (after throttling), this hour's use, throttle level.
    /// `ip`: the pool source IP the rate is kept for (a `sending_ip` label, the SPEC's name
    /// for it); `None` for a stream with one source IP, whose series keep their labels.
    pub fn provider_rate(
        &self,
        domain: &str,
        provider: &str,
        ip: Option<&str>,
        cap: u64,
        used: u64,
        level: u32,
    ) {
        let l = rate_labels(domain, provider, ip);
        self.gauge(PROVIDER_HOURLY_CAP, &l, cap as f64);
        self.gauge(PROVIDER_HOURLY_SENT, &l, used as f64);
        self.provider_throttle_level(domain, provider, ip, level);
    }

    /// Throttle level: the hourly cap is divided by 2^level (0 = not throttled).
    pub fn provider_throttle_level(
        &self,
        domain: &str,
        provider: &str,
        ip: Option<&str>,
        level: u32,
    ) {
        let l = rate_labels(domain, provider, ip);
        self.gauge(PROVIDER_THROTTLE_LEVEL, &l, f64::from(level));
    }

    /// A rate-limit reply (421 / 4.7.x) that slowed a provider down (for `ip` of a pool).
    pub fn throttle_event(&self, domain: &str, provider: &str, ip: Option<&str>) {
        self.counter(
            PROVIDER_THROTTLE_EVENTS,
            &rate_labels(domain, provider, ip),
            1,
        );
    }

    /// One reload: applied (`ok`) or refused (`error`).
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.counter(CONFIG_RELOADS, &[("result", result)], 1);
    }

    /// Both `mxgate_config_reloads_total` series at 0, so that the first reload is a change
    /// a `rate()` or an alert sees.
    pub fn declare_config_reloads(&self) {
        for result in ["ok", "error"] {
            self.counter(CONFIG_RELOADS, &[("result", result)], 0);
        }
    }

    /// One rspamd scan: `action` from [`crate::spam::Action::as_label`] or `error`.
    pub fn spam_result(&self, action: &'static str, seconds: f64) {
        self.counter(SPAM_RESULTS, &[("action", action)], 1);
        self.recorder
            .register_histogram(&Key::from_name(SPAM_SCAN), &metadata())
            .record(seconds);
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

/// Labels of a provider-rate series: `sending_ip` only for a pool IP's own rate.
fn rate_labels<'a>(
    domain: &'a str,
    provider: &'a str,
    ip: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut l = vec![("sending_domain", domain), ("provider", provider)];
    if let Some(ip) = ip {
        l.push(("sending_ip", ip));
    }
    l
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

    #[test]
    fn cached_handles_keep_every_series_apart() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.inbound_message("accepted", "ok");
        }
        m.inbound_message("accepted", "okay");
        m.inbound_message("rejected", "ok");
        // A clone shares the handles and the registry.
        m.clone().inbound_message("accepted", "ok");
        m.session_opened("inbound");
        m.session_opened("inbound");
        m.session_closed("inbound");
        m.session_opened("submission");
        let text = m.render();
        for line in [
            "mxgate_inbound_messages_total{result=\"accepted\",reason=\"ok\"} 4",
            "mxgate_inbound_messages_total{result=\"accepted\",reason=\"okay\"} 1",
            "mxgate_inbound_messages_total{result=\"rejected\",reason=\"ok\"} 1",
            "mxgate_smtp_connections{listener=\"inbound\"} 1",
            "mxgate_smtp_connections{listener=\"submission\"} 1",
            "mxgate_smtp_sessions_total{listener=\"inbound\"} 2",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
