//! Sending TLS-RPT reports (RFC 8460 §5): the [`Reporter`] task. Every
//! `relay.tls_rpt.check_interval` it looks for counters of days that are over (by the
//! server's [`Clock`]); for each domain-day it asks `_smtp._tls.<domain>`, builds the JSON
//! aggregate ([`rfc8460::report`]), gzips it and sends it to every `rua`: `mailto:` as an
//! RFC 8460 §5.3 message enqueued for the relay (from the null sender, as a DSN: a report
//! never bounces), `https:` as a POST of `application/tlsrpt+gzip` (§5.4). Then the
//! domain-day's counters are dropped: a report is sent once.
//!
//! Mailed reports are DKIM-signed for the `From:` domain (`server.hostname`, RFC 8460
//! §3) with the `[[dkim.keys]]` that cover it; without such a key a `mailto:` rua is
//! skipped (never sent unsigned), with one warning per report day, and `https:` ruas are
//! still served.
//!
//! A DNS failure keeps the counters for the next round, and so does a `rua` that could
//! not take the report for now (connection error, timeout, HTTP 5xx, a full queue): the
//! next round sends it again to that `rua` only (each `rua` that took it is marked), for
//! at most [`RETRY_DAYS`] days after the reported one. A refusal (HTTP 4xx, an address
//! that takes no mail) is not retried.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use tokio_util::sync::CancellationToken;

use super::mta_sts::Sts;
use super::tls_rpt::rfc8460::{self, Rua};
use super::tls_rpt::{self, DAY_MS, Session};
use crate::auth::sign::Signer;
use crate::clock::Clock;
use crate::config::Config;
use crate::dns::Dns;
use crate::envelope::{Address, ListenerKind, ReversePath};
use crate::http_client::ResolvingClient;
use crate::live::View;
use crate::queue::{NewMessage, Queue};
use crate::routing::Router;
use crate::stats::store::Store;

/// What the reports need; built per config in `server.rs`.
pub struct Reporter {
    config: Arc<Config>,
    dns: Dns,
    client: ResolvingClient,
    store: Store,
    clock: Clock,
    sts: Arc<Sts>,
    mail: Mailer,
    /// The last report day warned about for having no DKIM key: one warning per day.
    unsigned_warned: Mutex<Option<u64>>,
}

/// What a `mailto:` rua needs: the report DKIM-signed (RFC 8460 §3), routed and queued
/// like any other message.
pub struct Mailer {
    pub queue: Queue,
    pub router: Arc<Router>,
    pub signer: Arc<Signer>,
}

/// Days after the reported one during which a `rua` that failed is tried again.
pub const RETRY_DAYS: u64 = 2;

/// How one domain-day went.
enum Done {
    /// Reported, or nothing to report (no `_smtp._tls`): drop the counters.
    Drop,
    /// DNS did not answer, or a `rua` failed for now: keep them for the next round.
    Keep,
}

/// What one `rua` did with the report.
enum Sent {
    /// Taken, or refused for good: not tried again.
    Done,
    /// Failed for now: tried again next round.
    Retry,
    /// Not sent and not to be tried again for this report (no DKIM key to sign it).
    Skipped,
}

impl Reporter {
    pub fn new(
        config: Arc<Config>,
        dns: Dns,
        store: Store,
        clock: Clock,
        sts: Arc<Sts>,
        mail: Mailer,
    ) -> Reporter {
        let client = crate::http_client::resolving_client(
            "relay.tls_rpt",
            &config.relay.mta_sts.trust(),
            dns.clone(),
        );
        Reporter {
            config,
            dns,
            client,
            store,
            clock,
            sts,
            mail,
            unsigned_warned: Mutex::new(None),
        }
    }

    /// Reports finished days every `check_interval` of the current config until shutdown.
    pub async fn run(current: View<Reporter>, shutdown: CancellationToken) {
        loop {
            let r = current.get();
            if r.config.relay.tls_rpt.enabled {
                r.report_finished_days().await;
            }
            let every = r.config.relay.tls_rpt.check_interval.get();
            drop(r);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One round: every domain-day before today reported (or kept, on DNS trouble).
    pub async fn report_finished_days(&self) {
        let today = self.clock.now_ms() / DAY_MS;
        let counts = match tls_rpt::finished(&self.store, today) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "TLS-RPT: cannot read the session counters");
                return;
            }
        };
        // Keys sort by day, then domain: each domain-day is one run.
        let mut rest = counts.as_slice();
        while let Some((_, first, _)) = rest.first() {
            let n = rest
                .iter()
                .take_while(|(_, s, _)| s.day == first.day && s.domain == first.domain)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let sessions: Vec<(Session, i64)> =
                group.iter().map(|(_, s, n)| (s.clone(), *n)).collect();
            let done = self.report(first.day, &first.domain, &sessions).await;
            let given_up = today > first.day + 1 + RETRY_DAYS;
            if matches!(done, Done::Drop) || given_up {
                let keys: Vec<Vec<u8>> = group.iter().map(|(k, _, _)| k.clone()).collect();
                let dropped = tls_rpt::drop_counts(&self.store, first.day, &first.domain, &keys);
                if let Err(e) = dropped {
                    tracing::warn!(error = %e, "TLS-RPT: cannot drop reported counters");
                }
            }
        }
    }

    async fn report(&self, day: u64, domain: &str, sessions: &[(Session, i64)]) -> Done {
        let txts = match self.dns.txt(&format!("_smtp._tls.{domain}")).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(domain, error = %e, "TLS-RPT: _smtp._tls lookup failed, retrying later");
                return Done::Keep;
            }
        };
        let Some(ruas) = rfc8460::rua(&txts) else {
            return Done::Drop;
        };
        let hostname = self.config.server.hostname.as_str();
        let cfg = &self.config.relay.tls_rpt;
        let contact = if cfg.contact.is_empty() {
            format!("postmaster@{hostname}")
        } else {
            cfg.contact.clone()
        };
        let organization = if cfg.organization.is_empty() {
            hostname
        } else {
            cfg.organization.as_str()
        };
        let unique = format!("{:016x}", rand::random::<u64>());
        let date = date(day);
        let report_id = format!("{date}.{domain}.{unique}@{hostname}");
        let header = rfc8460::Header {
            organization,
            contact: &contact,
            report_id: &report_id,
            day,
            domain,
        };
        let json = rfc8460::report(&header, sessions, self.sts.description(domain).as_ref());
        let gz = rfc8460::gzip(&json);
        let report = Report {
            domain,
            day,
            report_id: &report_id,
            file: rfc8460::file_name(hostname, domain, day, &unique),
            gz: &gz,
        };
        let mut done = Done::Drop;
        for rua in ruas {
            let (Rua::Mailto(uri) | Rua::Https(uri)) = &rua;
            if tls_rpt::was_sent(&self.store, day, domain, uri) {
                continue;
            }
            let sent = match &rua {
                Rua::Mailto(addr) => self.mail(addr, &report).await,
                Rua::Https(url) => self.post(url, &report).await,
            };
            match sent {
                Sent::Done => {
                    if let Err(e) = tls_rpt::mark_sent(&self.store, day, domain, uri) {
                        tracing::warn!(domain, rua = %uri, error = %e, "TLS-RPT: cannot note the report sent");
                    }
                }
                Sent::Retry => done = Done::Keep,
                Sent::Skipped => {}
            }
        }
        done
    }

    /// §5.3: the report by mail, through the queue and the relay.
    async fn mail(&self, to: &str, r: &Report<'_>) -> Sent {
        let Some(addr) = Address::parse(to) else {
            tracing::info!(
                domain = r.domain,
                rua = to,
                "TLS-RPT: rua is not an address"
            );
            return Sent::Done;
        };
        let dest = match self.mail.router.resolve_or_relay(&addr) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(domain = r.domain, rua = to, error = %e, "TLS-RPT: rua takes no mail");
                return Sent::Done;
            }
        };
        let hostname = &self.config.server.hostname;
        let unsigned = message(hostname, to, r, self.clock.now_ms());
        let body = match self.mail.signer.sign(hostname, &unsigned) {
            Ok(Some(signature)) => [signature.into_bytes(), unsigned].concat(),
            Ok(None) => {
                self.warn_unsigned(r.day, hostname);
                return Sent::Skipped;
            }
            Err(e) => {
                tracing::warn!(domain = r.domain, rua = to, error = %e, "TLS-RPT: cannot sign the report, not mailed");
                return Sent::Skipped;
            }
        };
        let msg = NewMessage {
            listener: ListenerKind::Inbound,
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: hostname.clone(),
            mail_from: ReversePath::Null,
            recipients: vec![(addr, dest)],
            body,
        };
        match self.mail.queue.enqueue(msg).await {
            Ok(id) => {
                tracing::info!(domain = r.domain, rua = to, queue_id = %id, "TLS-RPT report queued");
                Sent::Done
            }
            Err(e) => {
                tracing::warn!(domain = r.domain, rua = to, error = %e, "TLS-RPT: cannot queue the report");
                Sent::Retry
            }
        }
    }

    /// §3: a report mail must be DKIM-signed; with no key for `hostname` its `mailto:`
    /// ruas are skipped, said once per report `day` (not once per domain and round).
    fn warn_unsigned(&self, day: u64, hostname: &str) {
        let mut last = self
            .unsigned_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *last != Some(day) {
            *last = Some(day);
            tracing::warn!(
                day = %date(day),
                hostname,
                "TLS-RPT: no [[dkim.keys]] entry signs for the report's From domain: \
                 mailto: ruas skipped (RFC 8460 §3 requires signed reports), https: ruas still served"
            );
        }
    }

    /// §5.4: the report POSTed as `application/tlsrpt+gzip`.
    async fn post(&self, url: &str, r: &Report<'_>) -> Sent {
        let req = match Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/tlsrpt+gzip")
            .body(Full::new(Bytes::copy_from_slice(r.gz)))
        {
            Ok(req) => req,
            Err(e) => {
                tracing::info!(domain = r.domain, rua = url, error = %e, "TLS-RPT: bad rua URL");
                return Sent::Done;
            }
        };
        let timeout = self.config.relay.mta_sts.fetch_timeout.get();
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                tracing::info!(domain = r.domain, rua = url, "TLS-RPT report posted");
                Sent::Done
            }
            Ok(Ok(resp)) => {
                let status = resp.status();
                tracing::warn!(domain = r.domain, rua = url, %status, "TLS-RPT: report refused");
                if status.is_server_error() || status == hyper::StatusCode::TOO_MANY_REQUESTS {
                    Sent::Retry
                } else {
                    Sent::Done
                }
            }
            Ok(Err(e)) => {
                let error = crate::error_chain::chain(&e);
                tracing::warn!(domain = r.domain, rua = url, %error, "TLS-RPT: report not posted");
                Sent::Retry
            }
            Err(_) => {
                tracing::warn!(
                    domain = r.domain,
                    rua = url,
                    ?timeout,
                    "TLS-RPT: report post timed out"
                );
                Sent::Retry
            }
        }
    }
}

/// One domain-day's report, ready to send.
struct Report<'a> {
    domain: &'a str,
    day: u64,
    report_id: &'a str,
    /// §5.3 attachment name.
    file: String,
    gz: &'a [u8],
}

/// `YYYY-MM-DD` of `day` (days since the epoch).
fn date(day: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(day * DAY_MS / 1000);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..10).unwrap_or(&s).to_string()
}

/// §5.3: `multipart/report; report-type="tlsrpt"`, a text part and the gzip'd report.
fn message(hostname: &str, to: &str, r: &Report<'_>, now_ms: u64) -> Vec<u8> {
    let sent = super::dsn::rfc5322_date(UNIX_EPOCH + Duration::from_millis(now_ms));
    let boundary = format!("tlsrpt.{}", r.report_id.replace('@', "."));
    let b64 = base64::engine::general_purpose::STANDARD.encode(r.gz);
    let mut lines = String::with_capacity(b64.len() + b64.len() / 38);
    for chunk in b64.as_bytes().chunks(76) {
        lines.push_str(&String::from_utf8_lossy(chunk));
        lines.push_str("\r\n");
    }
    format!(
        "From: TLS Reporting <postmaster@{hostname}>\r\n\
         To: <{to}>\r\n\
         Subject: Report Domain: {domain} Submitter: {hostname} Report-ID: <{id}>\r\n\
         Date: {sent}\r\n\
         Message-ID: <{id}>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: {hostname}\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is an aggregate TLS report (RFC 8460) from {hostname}\r\n\
         for {domain}, {day}.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{file}\"\r\n\
         \r\n\
         {lines}\
         --{boundary}--\r\n",
        domain = r.domain,
        id = r.report_id,
        day = date(r.day),
        file = r.file,
    )
    .into_bytes()
}
