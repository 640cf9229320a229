//! DKIM (RFC 6376 §3.6.1): each `[[dkim.keys]]` selector of the domain publishes exactly
//! our public key.

use base64::Engine;

use super::{Line, Status, line, tag};
use crate::auth::keys;
use crate::config::Config;
use crate::dns::Dns;

pub(super) async fn check(dns: &Dns, config: &Config, domain: &str) -> Vec<Line> {
    let entries: Vec<_> = config
        .dkim
        .keys
        .iter()
        .filter(|k| k.domain.trim_end_matches('.').eq_ignore_ascii_case(domain))
        .collect();
    if entries.is_empty() {
        return vec![line(
            Status::Warn,
            "DKIM",
            format!(
                "no [[dkim.keys]] for {domain}: outbound mail is unsigned; run: mxgate dkim keygen {domain} --selector mxgate"
            ),
        )];
    }
    let mut out = Vec::with_capacity(entries.len());
    for k in entries {
        let name = format!("{}._domainkey.{domain}", k.selector);
        let path = k.key_path(&config.server.data_dir);
        let key = match keys::load(&path, k.algorithm) {
            Ok(key) => key,
            Err(e) => {
                out.push(line(
                    Status::Fail,
                    "DKIM",
                    format!(
                        "{e}; run: mxgate dkim keygen {domain} --selector {}",
                        k.selector
                    ),
                ));
                continue;
            }
        };
        let want = key.dns_record();
        let publish = format!(
            "publish: {name}. IN TXT {}",
            crate::cli::dkim::zone_strings(&want)
        );
        let ours = base64::engine::general_purpose::STANDARD.encode(&key.public);
        let published = match dns.txt(&name).await {
            Ok(v) => v,
            Err(e) => {
                out.push(line(Status::Fail, "DKIM", format!("{e}; {publish}")));
                continue;
            }
        };
        let keys_found: Vec<String> = published
            .iter()
            .filter_map(|t| tag(t, "p").map(|p| p.split_whitespace().collect()))
            .collect();
        let l = if keys_found.is_empty() {
            line(Status::Fail, "DKIM", format!("no key at {name}; {publish}"))
        } else if keys_found.contains(&ours) {
            line(
                Status::Ok,
                "DKIM",
                format!("{name} publishes our {} key", k.algorithm.key_type()),
            )
        } else if keys_found.iter().any(String::is_empty) {
            line(
                Status::Fail,
                "DKIM",
                format!("{name} is revoked (empty p=); {publish}"),
            )
        } else {
            line(
                Status::Fail,
                "DKIM",
                format!(
                    "{name} publishes another key than {}; {publish}",
                    path.display()
                ),
            )
        };
        out.push(l);
    }
    out
}
