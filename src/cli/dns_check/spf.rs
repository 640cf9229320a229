//! SPF (RFC 7208): does the domain's one record authorise every host that sends its mail
//! through this server — this host itself, and each smart host?

use std::net::IpAddr;

use super::{Line, Status, is_version, line};
use crate::auth::{self, AuthResult};
use crate::config::{Config, HostAddr};
use crate::dns::Dns;

/// Who sends this domain's mail: this host (direct MX, or no smart host at all) and every
/// smart host. Each gets a mechanism in the suggested record.
struct Sender {
    mechanism: String,
    /// Addresses to evaluate the record for; empty = judged by the mechanism's presence.
    ips: Vec<IpAddr>,
    label: String,
}

async fn senders(dns: &Dns, config: &Config, host: &str) -> Result<Vec<Sender>, String> {
    let mut out = Vec::new();
    if config.relay.direct_mx || config.relay.smarthosts.is_empty() {
        let ips = dns.ips(host).await.map_err(|e| e.to_string())?;
        out.push(Sender {
            mechanism: format!("a:{host}"),
            ips,
            label: host.to_string(),
        });
    }
    for sh in &config.relay.smarthosts {
        let sender = match sh.host.get() {
            Some(HostAddr::Ip(ip @ IpAddr::V4(_))) => Sender {
                mechanism: format!("ip4:{ip}"),
                ips: vec![*ip],
                label: ip.to_string(),
            },
            Some(HostAddr::Ip(ip)) => Sender {
                mechanism: format!("ip6:{ip}"),
                ips: vec![*ip],
                label: ip.to_string(),
            },
            // A provider's relay (smtp.sendgrid.net) sends from addresses its own SPF
            // record lists: include the parent domain (sendgrid.net), as providers document.
            Some(HostAddr::Name(name)) => {
                let h = crate::dns::host_name(name);
                Sender {
                    mechanism: format!("include:{}", parent(&h)),
                    ips: Vec::new(),
                    label: h.clone(),
                }
            }
            // Refused by `validate` before any check runs.
            None => continue,
        };
        out.push(sender);
    }
    Ok(out)
}

/// `smtp.sendgrid.net` → `sendgrid.net`; a two-label name stays as it is.
fn parent(host: &str) -> &str {
    match host.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => host,
    }
}

pub(super) async fn check(dns: &Dns, config: &Config, domain: &str, host: &str) -> Line {
    let records = match dns.txt(domain).await {
        Ok(txt) => txt
            .into_iter()
            .filter(|t| is_version(t, "v=spf1"))
            .collect::<Vec<_>>(),
        Err(e) => return line(Status::Fail, "SPF", e.to_string()),
    };
    let senders = match senders(dns, config, host).await {
        Ok(s) => s,
        Err(e) => return line(Status::Fail, "SPF", format!("resolving {host}: {e}")),
    };
    let publish = |existing: Option<&str>, missing: &[&str]| {
        format!(
            "publish: {domain}. IN TXT \"{}\"",
            spf_record(existing, missing)
        )
    };
    let record = match records.as_slice() {
        [] => {
            let all: Vec<&str> = senders.iter().map(|s| s.mechanism.as_str()).collect();
            return line(
                Status::Fail,
                "SPF",
                format!("no SPF record; {}", publish(None, &all)),
            );
        }
        [one] => one.clone(),
        _ => {
            return line(
                Status::Fail,
                "SPF",
                format!(
                    "{} SPF records (RFC 7208 §4.5: permerror); merge them into one",
                    records.len()
                ),
            );
        }
    };
    let (missing, unchecked) = match judge(dns, &senders, &record, domain, host).await {
        Ok(v) => v,
        Err(why) => return line(Status::Fail, "SPF", why),
    };
    if !missing.is_empty() {
        let mechs: Vec<&str> = missing.iter().map(|s| s.mechanism.as_str()).collect();
        let who: Vec<&str> = missing.iter().map(|s| s.label.as_str()).collect();
        return line(
            Status::Fail,
            "SPF",
            format!(
                "\"{record}\" does not cover {}; {}",
                who.join(", "),
                publish(Some(&record), &mechs)
            ),
        );
    }
    if !unchecked.is_empty() {
        return line(
            Status::Warn,
            "SPF",
            format!(
                "\"{record}\" could not be checked for {} (no A/AAAA record)",
                unchecked.join(", ")
            ),
        );
    }
    line(Status::Ok, "SPF", format!("\"{record}\""))
}

/// Which senders `record` leaves out, and which could not be checked (our hostname without
/// an address); `Err` when evaluating it failed (DNS trouble, broken record).
async fn judge<'a>(
    dns: &Dns,
    senders: &'a [Sender],
    record: &str,
    domain: &str,
    host: &str,
) -> Result<(Vec<&'a Sender>, Vec<String>), String> {
    let mut missing = Vec::new();
    let mut unchecked = Vec::new();
    for s in senders {
        if s.ips.is_empty() {
            let has = record.split_whitespace().any(|t| {
                t.trim_start_matches(['+', '~', '?'])
                    .eq_ignore_ascii_case(&s.mechanism)
            });
            if has {
                continue;
            }
            if s.mechanism.starts_with("a:") {
                unchecked.push(s.label.clone());
            } else {
                missing.push(s);
            }
            continue;
        }
        for ip in &s.ips {
            match auth::spf_covers(dns, *ip, domain, host).await {
                AuthResult::Pass => {}
                AuthResult::TempError => {
                    return Err(format!("DNS lookup failed while evaluating \"{record}\""));
                }
                AuthResult::PermError => {
                    return Err(format!(
                        "\"{record}\" is broken (permerror: syntax or too many lookups)"
                    ));
                }
                other => {
                    tracing::debug!(%ip, result = %other, "SPF does not pass");
                    missing.push(s);
                    break;
                }
            }
        }
    }
    Ok((missing, unchecked))
}

/// The record to publish: the existing one with the missing mechanisms inserted before its
/// `all` (or `redirect=`), or a new one ending in `~all` (DMARC does the enforcing; a hard
/// fail would also hit mail forwarded without SRS).
fn spf_record(existing: Option<&str>, missing: &[&str]) -> String {
    let Some(existing) = existing else {
        return format!("v=spf1 {} ~all", missing.join(" "));
    };
    let mut terms: Vec<&str> = existing.split_whitespace().collect();
    let at = terms
        .iter()
        .position(|t| {
            let t = t.to_ascii_lowercase();
            t.trim_start_matches(['+', '-', '~', '?']) == "all" || t.starts_with("redirect=")
        })
        .unwrap_or(terms.len());
    for (i, m) in missing.iter().enumerate() {
        terms.insert(at + i, m);
    }
    terms.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_suggestion_keeps_the_record_and_inserts_before_all() {
        assert_eq!(
            spf_record(Some("v=spf1 mx -all"), &["a:mx.example.test"]),
            "v=spf1 mx a:mx.example.test -all"
        );
        assert_eq!(
            spf_record(Some("v=spf1 redirect=_spf.x.test"), &["ip4:192.0.2.1"]),
            "v=spf1 ip4:192.0.2.1 redirect=_spf.x.test"
        );
        assert_eq!(
            spf_record(None, &["a:mx.example.test", "include:sendgrid.net"]),
            "v=spf1 a:mx.example.test include:sendgrid.net ~all"
        );
    }

    #[test]
    fn a_relay_is_covered_by_its_parent_domain() {
        assert_eq!(parent("smtp.sendgrid.net"), "sendgrid.net");
        assert_eq!(parent("relay.test"), "relay.test");
    }
}
