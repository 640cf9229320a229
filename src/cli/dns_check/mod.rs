//! `mxgate dns-check DOMAIN [--config PATH]`: are DOMAIN's MX, SPF, DKIM and DMARC records
//! what this server needs? One `OK|WARN|FAIL <record> <why>` line each, with the exact
//! record to publish when it is missing or wrong; exit status 1 when any line is FAIL.
//!
//! Asked through the configured resolver (`[dns] nameservers`), so what it sees is what the
//! server sees. A lookup that fails is a FAIL too: nothing could be confirmed.

use std::fmt;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::dns::Dns;

mod dkim;
mod dmarc;
mod spf;

#[derive(clap::Args, Debug)]
pub struct DnsCheckArgs {
    /// The domain to check (an alias domain and/or a sending domain).
    pub domain: String,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One output line.
#[derive(Debug)]
pub struct Line {
    pub status: Status,
    pub record: &'static str,
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4} {:<5} {}", self.status, self.record, self.text)
    }
}

pub(super) fn line(status: Status, record: &'static str, text: impl Into<String>) -> Line {
    Line {
        status,
        record,
        text: text.into(),
    }
}

pub fn run(args: &DnsCheckArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let domain = args
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.is_empty() || !domain.contains('.') {
        anyhow::bail!("{:?} is not a domain name", args.domain);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let lines = runtime.block_on(async {
        let dns = Dns::from_config(&config.dns)?;
        anyhow::Ok(check(&dns, &config, &domain).await)
    })?;
    for l in &lines {
        println!("{l}");
    }
    let failed = lines.iter().any(|l| l.status == Status::Fail);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every check, in output order: MX, SPF, DKIM (one line per configured selector), DMARC.
pub async fn check(dns: &Dns, config: &Config, domain: &str) -> Vec<Line> {
    let host = crate::dns::host_name(&config.server.hostname);
    let mut lines = vec![
        mx(dns, domain, &host).await,
        spf::check(dns, config, domain, &host).await,
    ];
    lines.extend(dkim::check(dns, config, domain).await);
    lines.push(dmarc::check(dns, domain).await);
    lines
}

/// The MX must name this server's hostname.
async fn mx(dns: &Dns, domain: &str, host: &str) -> Line {
    let want = format!("publish: {domain}. IN MX 10 {host}.");
    match dns.mx(domain).await {
        Err(e) => line(Status::Fail, "MX", format!("{e}; {want}")),
        Ok(v) if v.is_empty() => line(Status::Fail, "MX", format!("no MX record; {want}")),
        Ok(v) => {
            let list = v
                .iter()
                .map(|(p, h)| format!("{p} {h}."))
                .collect::<Vec<_>>()
                .join(", ");
            let best = v.iter().map(|(p, _)| *p).min().unwrap_or_default();
            match v.iter().find(|(_, h)| h == host) {
                Some((p, _)) if *p == best => line(Status::Ok, "MX", format!("{domain} MX {list}")),
                Some(_) => line(
                    Status::Warn,
                    "MX",
                    format!("{host} is not the preferred MX ({list}); {want}"),
                ),
                None => line(
                    Status::Fail,
                    "MX",
                    format!("MX is {list}, not {host}; {want}"),
                ),
            }
        }
    }
}

/// `v=spf1 ...` / `v=DMARC1; ...`: the version tag, case-insensitively, as a whole term.
pub(super) fn is_version(txt: &str, version: &str) -> bool {
    let t = txt.trim_start();
    t.len() >= version.len()
        && t[..version.len()].eq_ignore_ascii_case(version)
        && t[version.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == ';')
}

/// The value of tag `name` in a `tag=value; ...` list (DKIM/DMARC syntax), trimmed.
pub(super) fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_versions_are_parsed_leniently() {
        assert!(is_version("v=spf1 -all", "v=spf1"));
        assert!(is_version("V=DMARC1;p=none", "v=DMARC1"));
        assert!(!is_version("v=spf10", "v=spf1"));
        assert_eq!(
            tag("v=DMARC1; P = reject ;rua=mailto:a@b", "p").as_deref(),
            Some("reject")
        );
        assert_eq!(tag("v=DKIM1; p=", "p").as_deref(), Some(""));
    }
}
