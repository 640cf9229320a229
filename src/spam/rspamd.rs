//! rspamd's HTTP protocol (`POST /checkv2`, rspamd ≥ 2.0): the request mxgate sends for one
//! message and the [`Verdict`] it reads back.
//!
//! The envelope goes in request headers (`IP`, `Helo`, `From`, one `Rcpt` per recipient,
//! `Hostname`, `Queue-Id`, `MTA-Name`), the message as the body. The SPF, DKIM and DMARC
//! results mxgate already has go in the `SPF`, `DKIM` and `DMARC` headers of rspamd's
//! `http_headers` module: with it enabled, rspamd inserts the matching symbols
//! (`R_SPF_ALLOW`, `R_DKIM_ALLOW`, `DMARC_POLICY_ALLOW`, ...) and skips its own checks, so
//! no DNS query is made twice. Without it rspamd ignores them and checks again.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request as HttpRequest, Uri};
use serde::Deserialize;

use super::{Action, ScanError, Verdict};
use crate::auth::{AuthResult, AuthVerdict, DmarcPolicy};
use crate::config::SpamConfig;
use crate::metrics::Metrics;

/// rspamd's answer is a few KiB; anything much larger is not rspamd.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What rspamd is told about one message besides its bytes.
pub struct Request<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// The MAIL FROM address; empty for the null sender.
    pub mail_from: &'a str,
    pub rcpts: Vec<String>,
    /// mxgate's queue id for the message, so both logs name it the same.
    pub queue_id: String,
    /// This server's name (`server.hostname`).
    pub mta_name: &'a str,
    /// Sender authentication as mxgate found it; `None` when it did not check.
    pub auth: Option<&'a AuthVerdict>,
}

/// Scans messages with one rspamd. Cheap to share: holds a pooled HTTP client.
pub struct Scanner {
    client: crate::http_client::Client,
    endpoint: Uri,
    timeout: std::time::Duration,
    metrics: Metrics,
}

impl Scanner {
    /// `None` when `[spam] rspamd_url` is empty (or, in a config that failed validation,
    /// not a URL).
    pub fn new(config: &SpamConfig, metrics: Metrics) -> Option<Scanner> {
        if !config.enabled() {
            return None;
        }
        let base = config.rspamd_url.trim().trim_end_matches('/');
        let endpoint = format!("{base}/checkv2").parse().ok()?;
        Some(Scanner {
            client: crate::http_client::client("spam", &crate::config::HttpsTrust::default()),
            endpoint,
            timeout: config.timeout.get(),
            metrics,
        })
    }

    /// rspamd's verdict on `message`, within `spam.timeout`. Counts the result and the
    /// scan time in the metrics either way.
    pub async fn scan(&self, req: &Request<'_>, message: &[u8]) -> Result<Verdict, ScanError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.ask(req, message)).await {
            Ok(r) => r,
            Err(_) => Err(ScanError::Timeout(self.timeout)),
        };
        let label = result.as_ref().map_or("error", |v| v.action.as_label());
        self.metrics
            .spam_result(label, started.elapsed().as_secs_f64());
        result
    }

    async fn ask(&self, req: &Request<'_>, message: &[u8]) -> Result<Verdict, ScanError> {
        let http = build(&self.endpoint, req, message)?;
        let answer = self
            .client
            .request(http)
            .await
            .map_err(|e| ScanError::Http(crate::error_chain::chain(&e)))?;
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| ScanError::Http(crate::error_chain::chain(&e)))?
            .to_bytes();
        if !status.is_success() {
            return Err(ScanError::Status(status.as_u16()));
        }
        if body.len() > MAX_ANSWER_BYTES {
            return Err(ScanError::Answer("answer too large".into()));
        }
        parse(&body)
    }
}

fn build(
    endpoint: &Uri,
    req: &Request<'_>,
    message: &[u8],
) -> Result<HttpRequest<Full<Bytes>>, ScanError> {
    let mut http = HttpRequest::post(endpoint.clone())
        .body(Full::new(Bytes::copy_from_slice(message)))
        .map_err(|e| ScanError::Http(e.to_string()))?;
    let h = http.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    let mut add = |name: &'static str, v: &str| {
        h.append(HeaderName::from_static(name), header_value(v));
    };
    add("ip", &req.ip.to_string());
    if !req.helo.is_empty() {
        add("helo", req.helo);
    }
    if !req.mail_from.is_empty() {
        add("from", req.mail_from);
    }
    for rcpt in &req.rcpts {
        add("rcpt", rcpt);
    }
    add("queue-id", &req.queue_id);
    add("mta-name", req.mta_name);
    if let Some(auth) = req.auth {
        for (name, value) in auth_headers(auth) {
            add(name, &value);
        }
    }
    Ok(http)
}

/// `Hostname` (the client's verified reverse name, `unknown` without one: rspamd's
/// `RDNS_NONE`) and the `SPF`/`DKIM`/`DMARC` JSON of rspamd's `http_headers` module, for
/// each method mxgate ran.
fn auth_headers(auth: &AuthVerdict) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(4);
    if let Some(iprev) = &auth.iprev {
        let host = match (&iprev.ptr, iprev.result) {
            (Some(ptr), AuthResult::Pass) => ptr.trim_end_matches('.').to_string(),
            _ => "unknown".to_string(),
        };
        out.push(("hostname", host));
    }
    if let Some(spf) = auth.spf() {
        out.push(("spf", json_result(spf_word(spf.result))));
    }
    if !auth.dkim.is_empty() {
        let results: Vec<serde_json::Value> = auth
            .dkim
            .iter()
            .map(|d| {
                let domain = if d.domain.is_empty() {
                    "unknown"
                } else {
                    &d.domain
                };
                serde_json::json!({"domain": domain, "result": dkim_word(d.result)})
            })
            .collect();
        out.push((
            "dkim",
            serde_json::json!({ "results": results }).to_string(),
        ));
    }
    if let Some(dmarc) = &auth.dmarc {
        let word = match (dmarc.result, dmarc.policy) {
            (AuthResult::Pass, _) => "pass",
            (AuthResult::Fail, DmarcPolicy::Reject) => "reject",
            (AuthResult::Fail, DmarcPolicy::Quarantine) => "quarantine",
            (AuthResult::Fail, DmarcPolicy::None) => "softfail",
            (AuthResult::TempError, _) => "tempfail",
            (AuthResult::PermError, _) => "permfail",
            _ => "na",
        };
        out.push(("dmarc", json_result(word)));
    }
    out
}

fn json_result(word: &str) -> String {
    serde_json::json!({ "result": word }).to_string()
}

/// The words rspamd's `http_headers` module knows (`plugins/http_headers.lua`).
fn spf_word(r: AuthResult) -> &'static str {
    match r {
        AuthResult::Pass => "pass",
        AuthResult::Fail => "fail",
        AuthResult::SoftFail => "softfail",
        AuthResult::Neutral => "neutral",
        AuthResult::None => "na",
        AuthResult::TempError => "tempfail",
        AuthResult::PermError => "permfail",
    }
}

fn dkim_word(r: AuthResult) -> &'static str {
    match r {
        AuthResult::Pass => "pass",
        AuthResult::Fail | AuthResult::SoftFail => "fail",
        AuthResult::TempError => "tempfail",
        AuthResult::PermError | AuthResult::Neutral => "permfail",
        AuthResult::None => "na",
    }
}

/// Envelope values are parsed addresses and names; control characters cannot reach a
/// header line (dropped defensively, as in the ERP push).
fn header_value(s: &str) -> HeaderValue {
    let clean: Vec<u8> = s.bytes().filter(|b| *b >= 0x20 && *b != 0x7f).collect();
    HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The parts of rspamd's `/checkv2` answer mxgate uses.
#[derive(Deserialize)]
struct Answer {
    action: String,
    #[serde(default)]
    score: f64,
    #[serde(default)]
    required_score: f64,
    #[serde(default)]
    symbols: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    messages: BTreeMap<String, serde_json::Value>,
    /// The new Subject, with the `rewrite subject` action.
    subject: Option<String>,
    milter: Option<Milter>,
}

/// Header changes rspamd asks for (its `milter_headers` module).
#[derive(Default, Deserialize)]
struct Milter {
    /// Name → a value, `{"value": .., "order": ..}`, or a list of those.
    #[serde(default)]
    add_headers: BTreeMap<String, serde_json::Value>,
    /// Name → which occurrence (0 = all).
    #[serde(default)]
    remove_headers: BTreeMap<String, serde_json::Value>,
}

/// Reads a `/checkv2` answer.
pub fn parse(body: &[u8]) -> Result<Verdict, ScanError> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| ScanError::Answer(e.to_string()))?;
    let milter = a.milter.unwrap_or_default();
    let mut add_headers = Vec::new();
    for (name, v) in &milter.add_headers {
        let values = match v {
            serde_json::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in values {
            let value = match item {
                serde_json::Value::String(s) => Some(s.as_str()),
                other => other.get("value").and_then(serde_json::Value::as_str),
            };
            if let Some(value) = value {
                add_headers.push((name.clone(), value.to_string()));
            }
        }
    }
    Ok(Verdict {
        action: Action::from_rspamd(&a.action),
        score: a.score,
        required_score: a.required_score,
        message: a
            .messages
            .get("smtp_message")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        symbols: a.symbols.into_keys().collect(),
        subject: a.subject,
        add_headers,
        remove_headers: milter.remove_headers.into_keys().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rspamd 3.4's answer for a message over the add-header threshold (captured).
    const ADD_HEADER: &str = r#"{"is_skipped":false,"score":8.0,"required_score":15.0,"action":"add header","symbols":{"MXGATE_TEST_SPAMMY":{"name":"MXGATE_TEST_SPAMMY","score":8.0,"metric_score":8.0},"R_SPF_ALLOW":{"name":"R_SPF_ALLOW","score":0.0,"metric_score":0.0,"options":["http header"]}},"messages":{},"message-id":"undef","time_real":0.000327,"milter":{"add_headers":{"X-Spamd-Result":{"value":"default: False [8.00 / 15.00];\r\n\tMXGATE_TEST_SPAMMY(8.00)[]","order":-1},"X-Two":["a",{"value":"b"}]},"remove_headers":{"X-Spam":0,"X-Spamd-Result":0}}}"#;

    #[test]
    fn a_checkv2_answer_becomes_a_verdict() {
        let v = parse(ADD_HEADER.as_bytes()).expect("parses");
        assert_eq!(v.action, Action::AddHeader);
        assert_eq!((v.score, v.required_score), (8.0, 15.0));
        assert_eq!(v.symbols, ["MXGATE_TEST_SPAMMY", "R_SPF_ALLOW"]);
        assert_eq!(v.message, None);
        assert_eq!(v.add_headers.len(), 3);
        assert_eq!(v.add_headers[1], ("X-Two".to_string(), "a".to_string()));
        assert_eq!(v.remove_headers, ["X-Spam", "X-Spamd-Result"]);
        let gtube = r#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},"messages":{"smtp_message":"Gtube pattern"}}"#;
        let v = parse(gtube.as_bytes()).expect("parses");
        assert_eq!(
            (v.action, v.message.as_deref()),
            (Action::Reject, Some("Gtube pattern"))
        );
        assert!(matches!(
            parse(b"<html>502</html>"),
            Err(ScanError::Answer(_))
        ));
    }

    #[test]
    fn the_auth_verdict_goes_in_http_headers_module_words() {
        use crate::auth::{DkimCheck, DmarcCheck, IprevCheck, SpfCheck, SpfIdentity};
        let mut auth = AuthVerdict::unchecked("192.0.2.1".parse().expect("ip"));
        assert!(
            auth_headers(&auth).is_empty(),
            "methods off: rspamd checks itself"
        );
        auth.spf_mail_from = Some(SpfCheck {
            identity: SpfIdentity::MailFrom,
            result: AuthResult::SoftFail,
            subject: "a@s.test".into(),
            domain: "s.test".into(),
        });
        auth.dkim = vec![DkimCheck {
            result: AuthResult::Pass,
            domain: "s.test".into(),
            selector: "k".into(),
            b_prefix: String::new(),
            reason: None,
        }];
        auth.dmarc = Some(DmarcCheck {
            result: AuthResult::Fail,
            header_from: "s.test".into(),
            policy: DmarcPolicy::Quarantine,
            policy_known: true,
            spf_aligned: false,
            dkim_aligned: false,
            reason: None,
        });
        auth.iprev = Some(IprevCheck {
            result: AuthResult::Pass,
            ptr: Some("mail.s.test.".into()),
            reason: None,
        });
        let h: BTreeMap<_, _> = auth_headers(&auth).into_iter().collect();
        assert_eq!(h["hostname"], "mail.s.test");
        assert_eq!(h["spf"], r#"{"result":"softfail"}"#);
        assert_eq!(
            h["dkim"],
            r#"{"results":[{"domain":"s.test","result":"pass"}]}"#
        );
        assert_eq!(h["dmarc"], r#"{"result":"quarantine"}"#);
    }
}
