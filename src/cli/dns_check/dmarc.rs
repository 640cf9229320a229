//! DMARC (RFC 7489 §6.1): one record at `_dmarc.<domain>`, with an enforcing policy and
//! an aggregate report address.

use super::{Line, Status, is_version, line, tag};
use crate::dns::Dns;

pub(super) async fn check(dns: &Dns, domain: &str) -> Line {
    let name = format!("_dmarc.{domain}");
    let default_rua = format!("mailto:dmarc@{domain}");
    let publish =
        |p: &str, rua: &str| format!("publish: {name}. IN TXT \"v=DMARC1; p={p}; rua={rua}\"");
    let records = match dns.txt(&name).await {
        Ok(v) => v
            .into_iter()
            .filter(|t| is_version(t, "v=DMARC1"))
            .collect::<Vec<_>>(),
        Err(e) => {
            return line(
                Status::Fail,
                "DMARC",
                format!("{e}; {}", publish("quarantine", &default_rua)),
            );
        }
    };
    let record = match records.as_slice() {
        [] => {
            return line(
                Status::Fail,
                "DMARC",
                format!(
                    "no record at {name}; {}",
                    publish("quarantine", &default_rua)
                ),
            );
        }
        [one] => one,
        _ => {
            return line(
                Status::Fail,
                "DMARC",
                format!(
                    "{} records at {name} (receivers ignore them all); {}",
                    records.len(),
                    publish("quarantine", &default_rua)
                ),
            );
        }
    };
    let p = tag(record, "p").map(|p| p.to_ascii_lowercase());
    let rua = tag(record, "rua").filter(|r| !r.is_empty());
    let rua_or_default = rua.clone().unwrap_or(default_rua.clone());
    match (p.as_deref(), &rua) {
        (Some("reject" | "quarantine"), Some(r)) => line(
            Status::Ok,
            "DMARC",
            format!("p={} rua={r}", p.unwrap_or_default()),
        ),
        (Some(p @ ("reject" | "quarantine")), None) => line(
            Status::Warn,
            "DMARC",
            format!(
                "p={p} but no rua=: no aggregate reports reach you; {}",
                publish(p, &rua_or_default)
            ),
        ),
        (Some("none"), _) => line(
            Status::Warn,
            "DMARC",
            format!(
                "p=none: monitoring only, receivers do not act on failures; once reports are clean {}",
                publish("quarantine", &rua_or_default)
            ),
        ),
        _ => line(
            Status::Fail,
            "DMARC",
            format!(
                "\"{record}\" has no valid p= tag; {}",
                publish("quarantine", &rua_or_default)
            ),
        ),
    }
}
