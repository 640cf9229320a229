//! RFC 8460, sans I/O: the `_smtp._tls` TXT record (§3) and the aggregate report (§4),
//! its gzip (§5.1) and its file name (§5.3).

use std::collections::BTreeMap;
use std::io::Write as _;

use serde_json::{Value, json};

use super::{DAY_MS, PolicyType, ResultType, Session};

/// Where a domain wants its reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rua {
    /// `mailto:` address (local@domain, no query).
    Mailto(String),
    /// `https:` URL, POSTed to.
    Https(String),
}

/// §3: the `rua` URIs of the one TXT string starting with `v=TLSRPTv1`; `None` when the
/// domain has no such record (or several, or one without a usable `rua`). Unknown URI
/// schemes are skipped.
pub fn rua(txts: &[String]) -> Option<Vec<Rua>> {
    let records: Vec<&String> = txts
        .iter()
        .filter(|t| t.trim_start().starts_with("v=TLSRPTv1"))
        .collect();
    let [record] = records.as_slice() else {
        return None;
    };
    let value = record
        .split(';')
        .filter_map(|f| f.trim().split_once('='))
        .find(|(k, _)| k.trim() == "rua")?
        .1;
    let uris: Vec<Rua> = value
        .split(',')
        .map(str::trim)
        .filter_map(|u| {
            if let Some(addr) = strip_scheme(u, "mailto:") {
                // RFC 6068: mailto:addr?query — the query has no meaning here.
                let addr = addr.split('?').next().unwrap_or("");
                addr.contains('@').then(|| Rua::Mailto(addr.to_string()))
            } else {
                strip_scheme(u, "https:").map(|_| Rua::Https(u.to_string()))
            }
        })
        .collect();
    (!uris.is_empty()).then_some(uris)
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let head = uri.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &uri[scheme.len()..])
}

/// What the report says of one domain's `sts` policy (§4.3.1): its lines and MX patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StsDescription {
    pub policy_string: Vec<String>,
    pub mx_host: Vec<String>,
}

/// Who reports, and for what.
pub struct Header<'a> {
    pub organization: &'a str,
    pub contact: &'a str,
    pub report_id: &'a str,
    pub day: u64,
    pub domain: &'a str,
}

/// §4: the JSON report of `domain`'s sessions on `day` (`sessions`: counters of that day
/// and domain). `sts`: the domain's policy, for the `sts` entries.
pub fn report(h: &Header<'_>, sessions: &[(Session, i64)], sts: Option<&StsDescription>) -> Value {
    // One entry per policy type: successes summed, failures per (result, MX host).
    let mut by_policy: BTreeMap<PolicyType, (i64, i64, Vec<Value>)> = BTreeMap::new();
    for (s, n) in sessions {
        let entry = by_policy.entry(s.policy).or_default();
        match s.failure {
            None => entry.0 += n,
            Some(r) => {
                entry.1 += n;
                entry.2.push(failure_detail(r, &s.mx, *n));
            }
        }
    }
    let policies: Vec<Value> = by_policy
        .into_iter()
        .map(|(p, (ok, failed, details))| {
            let mut policy = json!({
                "policy-type": p.as_str(),
                "policy-domain": h.domain,
            });
            if let (PolicyType::Sts, Some(d)) = (p, sts) {
                policy["policy-string"] = json!(d.policy_string);
                policy["mx-host"] = json!(d.mx_host);
            }
            let mut entry = json!({
                "policy": policy,
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": failed,
                },
            });
            if !details.is_empty() {
                entry["failure-details"] = Value::Array(details);
            }
            entry
        })
        .collect();
    let (start, end) = day_bounds(h.day);
    json!({
        "organization-name": h.organization,
        "date-range": {
            "start-datetime": rfc3339(start),
            "end-datetime": rfc3339(end),
        },
        "contact-info": h.contact,
        "report-id": h.report_id,
        "policies": policies,
    })
}

fn failure_detail(r: ResultType, mx: &str, n: i64) -> Value {
    let mut d = json!({ "result-type": r.as_str(), "failed-session-count": n });
    if !mx.is_empty() {
        d["receiving-mx-hostname"] = json!(mx);
    }
    d
}

/// The first and last second of `day` (days since the epoch, UTC), in seconds.
pub fn day_bounds(day: u64) -> (u64, u64) {
    let start = day * DAY_MS / 1000;
    (start, start + DAY_MS / 1000 - 1)
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// §5.1: the report as sent, `application/tlsrpt+gzip`.
pub fn gzip(report: &Value) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(report.to_string().as_bytes());
    enc.finish().unwrap_or_default()
}

/// §5.3: `<submitter>!<policy-domain>!<begin>!<end>!<unique-id>.json.gz`.
pub fn file_name(submitter: &str, domain: &str, day: u64, unique: &str) -> String {
    let (start, end) = day_bounds(day);
    format!("{submitter}!{domain}!{start}!{end}!{unique}.json.gz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn txt(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rua_lists_mailto_and_https_and_skips_other_schemes() {
        let got = rua(&txt(&[
            "v=spf1 -all",
            "v=TLSRPTv1; rua=mailto:tls@example.com?subject=x, https://r.example.com/v1,ftp://x",
        ]));
        assert_eq!(
            got,
            Some(vec![
                Rua::Mailto("tls@example.com".into()),
                Rua::Https("https://r.example.com/v1".into())
            ])
        );
        assert_eq!(rua(&txt(&["v=TLSRPTv1;"])), None);
        assert_eq!(rua(&txt(&["v=TLSRPTv1; rua=ftp://x"])), None);
        assert_eq!(rua(&txt(&[])), None);
        assert_eq!(
            rua(&txt(&[
                "v=TLSRPTv1; rua=mailto:a@x",
                "v=TLSRPTv1; rua=mailto:b@x"
            ])),
            None
        );
    }

    #[test]
    fn the_report_sums_successes_and_details_failures_per_policy() {
        let s = |policy, failure, mx: &str| Session {
            day: 20_000,
            domain: "example.com".into(),
            policy,
            failure,
            mx: mx.into(),
        };
        let sessions = [
            (s(PolicyType::Sts, None, ""), 5),
            (
                s(
                    PolicyType::Sts,
                    Some(ResultType::CertificateHostMismatch),
                    "mx2.example.com",
                ),
                2,
            ),
            (s(PolicyType::NoPolicyFound, None, ""), 1),
        ];
        let sts = StsDescription {
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["*.example.com".into()],
        };
        let h = Header {
            organization: "mxgate.test",
            contact: "postmaster@mxgate.test",
            report_id: "r1",
            day: 20_000,
            domain: "example.com",
        };
        let r = report(&h, &sessions, Some(&sts));
        assert_eq!(r["date-range"]["start-datetime"], "2024-10-04T00:00:00Z");
        assert_eq!(r["date-range"]["end-datetime"], "2024-10-04T23:59:59Z");
        let p = &r["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["mx-host"][0], "*.example.com");
        assert_eq!(p["summary"]["total-successful-session-count"], 5);
        assert_eq!(p["summary"]["total-failure-session-count"], 2);
        assert_eq!(
            p["failure-details"][0]["result-type"],
            "certificate-host-mismatch"
        );
        assert_eq!(
            p["failure-details"][0]["receiving-mx-hostname"],
            "mx2.example.com"
        );
        let none = &r["policies"][1];
        assert_eq!(none["policy"]["policy-type"], "no-policy-found");
        assert!(none["policy"].get("policy-string").is_none());

        let mut json = String::new();
        flate2::read::GzDecoder::new(gzip(&r).as_slice())
            .read_to_string(&mut json)
            .expect("gzip");
        assert_eq!(serde_json::from_str::<Value>(&json).expect("json"), r);
    }
}
