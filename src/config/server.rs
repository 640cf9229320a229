//! `[server]`, `[listeners.*]`, `[smtp]` (session limits), `[admin]`, `[tls]`, `[dns]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::types::{ByteSize, HumanDuration, Secret};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// EHLO name, authserv-id and the `by` of our Received header.
    pub hostname: String,
    /// RocksDB and generated files; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// Deadline for sessions and deliveries to finish after SIGTERM.
    pub shutdown_timeout: HumanDuration,
    /// Threads running sessions and deliveries; 0 = one per core but one (see
    /// [`ServerConfig::workers`]).
    pub worker_threads: usize,
    /// Run every thread of the server under Linux's `SCHED_BATCH` policy (nice unchanged):
    /// a thread woken by another (a session answering the committer, the fsync thread
    /// answering a session) waits for the running one's slice instead of preempting it.
    /// Measured on the 2-core bench host (issue 13, benches/load/ab.sh 8 rounds): 5,246 ->
    /// 6,545 inbound msg/s, 0.165 -> 0.137 ms CPU per message; before, waking the committer
    /// preempted the session thread at its futex wake (6% of its samples were that context
    /// switch). A woken thread may wait up to a scheduler slice; benches/load/latency.sh saw
    /// the same p50 per message idle and a lower one under load. Unprivileged: lowering to
    /// SCHED_BATCH needs no capability.
    pub sched_batch: bool,
}

/// More worker threads than any host has cores for: a typo, not a setting.
pub const MAX_WORKER_THREADS: usize = 1024;

impl ServerConfig {
    /// The async runtime's worker count on a host with `cores` cores: `worker_threads`, or
    /// when 0 every core but one, at least one. The core left over is for the threads that
    /// are not workers and are busy exactly when the workers are: the queue committer (every
    /// RocksDB write and WAL fsync, about a third of a core under inbound load) and
    /// RocksDB's flush and compaction. One worker per core, tokio's default, makes the workers
    /// and the committer preempt each other; on the 2-core bench host one worker instead of
    /// two cut server CPU per message by 15% and raised inbound throughput by 10%
    /// (benches/load/ab.sh, issue 13).
    pub fn workers(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => cores.saturating_sub(1).max(1),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: "mx.example.test".into(),
            data_dir: "data".into(),
            shutdown_timeout: HumanDuration::secs(30),
            worker_threads: 0,
            sched_batch: true,
        }
    }
}

/// The three SMTP listeners SPEC names. Each is optional: a missing table means the
/// listener is not started.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    pub inbound: Option<ListenerConfig>,
    pub submission: Option<ListenerConfig>,
    pub submissions: Option<ListenerConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
}

/// Limits every SMTP session obeys, with Postfix's names in mind
/// (`smtpd_recipient_limit`, `message_size_limit`, `hopcount_limit`, ...).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Largest message accepted, advertised in EHLO SIZE (RFC 1870); beyond it: 552 5.3.4.
    pub max_message_bytes: ByteSize,
    /// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included; beyond it
    /// `500 5.5.2 Line too long`. AUTH lines have their own RFC 4954 limit
    /// ([`AUTH_LINE_BYTES`](crate::session::AUTH_LINE_BYTES)); DATA text lines theirs.
    pub max_line_bytes: usize,
    /// Recipients per transaction; RFC 5321 §4.5.3.1.8 requires at least 100.
    pub max_recipients: usize,
    /// Simultaneous sessions over all listeners.
    pub max_connections: usize,
    /// Simultaneous sessions from one client IP.
    pub max_connections_per_ip: usize,
    /// Time a client may stay silent between commands (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub idle_timeout: HumanDuration,
    /// Time allowed for the whole DATA/BDAT transfer (RFC 5321 §4.5.3.2.6: 10 minutes for
    /// the final dot; we bound the whole transfer so slow-drip clients cannot hold a slot).
    pub data_timeout: HumanDuration,
    /// More Received headers than this: 554 5.4.6 mail loop (Postfix hopcount_limit = 50).
    pub max_hops: usize,
    /// Errors (bad commands, refused recipients) before the session is closed with 421.
    pub max_errors: usize,
    /// Failed AUTH attempts per client IP before further attempts are refused.
    pub max_auth_failures: usize,
    /// Inbound listener only: the banner waits this long, and a client that sends
    /// anything before it is a pregreeter (postscreen's test; bots that do not wait for the
    /// 220): `554 5.5.1` and closed. `0s` = banner at once, no test.
    pub greet_delay: HumanDuration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_bytes: ByteSize(25 * 1024 * 1024),
            max_line_bytes: 512,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_ip: 50,
            idle_timeout: HumanDuration::secs(300),
            data_timeout: HumanDuration::secs(600),
            max_hops: 50,
            max_errors: 20,
            max_auth_failures: 5,
            greet_delay: HumanDuration::secs(0),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Bearer token for `/api`; empty = none (only sensible on loopback).
    pub token: Secret,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8025)),
            token: Secret::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; created self-signed for `server.hostname` when missing.
    pub cert: PathBuf,
    /// PEM private key, created with the certificate.
    pub key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "certs/mxgate.crt".into(),
            key: "certs/mxgate.key".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `ip:port` of the resolvers to ask; empty = the system resolver (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    pub timeout: HumanDuration,
    /// Entries kept in the resolver cache.
    pub cache_size: usize,
    /// File of DNSKEY records (zone-file lines) the DNSSEC validation used by DANE trusts;
    /// empty = the root zone's KSKs built into hickory (20326, 38696).
    pub dnssec_trust_anchor: PathBuf,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: HumanDuration::secs(5),
            cache_size: 4096,
            dnssec_trust_anchor: PathBuf::new(),
        }
    }
}

#[cfg(test)]
mod worker_tests {
    use super::*;

    #[test]
    fn workers_leave_a_core_to_the_committer_unless_set() {
        let auto = ServerConfig::default();
        assert_eq!(
            [1, 2, 4, 16].map(|cores| auto.workers(cores)),
            [1, 1, 3, 15]
        );
        let set = ServerConfig {
            worker_threads: 3,
            ..ServerConfig::default()
        };
        assert_eq!([1, 2, 16].map(|cores| set.workers(cores)), [3, 3, 3]);
    }

    #[test]
    fn too_many_worker_threads_is_a_problem_at_its_key() {
        let text = format!("[server]\nworker_threads = {}\n", MAX_WORKER_THREADS + 1);
        let e = crate::config::Config::from_toml(&text, std::path::Path::new("t.toml"))
            .expect_err("invalid");
        assert!(
            e.problems
                .iter()
                .any(|p| p.path == "server.worker_threads" && p.line == Some(2)),
            "{e}"
        );
        let ok = format!("[server]\nworker_threads = {MAX_WORKER_THREADS}\n");
        assert!(crate::config::Config::from_toml(&ok, std::path::Path::new("t.toml")).is_ok());
    }
}
