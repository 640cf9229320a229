//! `mxgate dkim keygen DOMAIN --selector S [--algo rsa|ed25519] [--config PATH]`: creates
//! the private key where the config expects it (the matching `[[dkim.keys]]` entry's
//! `key_file`, else `<data_dir>/dkim/<domain>.<selector>.key`) and prints the TXT record to
//! publish — plus the `[[dkim.keys]]` entry when the config has none yet.
//!
//! An existing key file is never replaced: a published selector must keep its key (rotate
//! by generating a new selector).

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::auth::keys;
use crate::config::DkimAlgorithm;

#[derive(clap::Args, Debug)]
pub struct DkimArgs {
    #[command(subcommand)]
    pub command: DkimCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DkimCommand {
    /// Generate a signing key for DOMAIN and print the DNS record to publish.
    Keygen(KeygenArgs),
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// The sending domain (`d=`), e.g. example.test.
    pub domain: String,
    /// The selector (`s=`): the record goes to `<selector>._domainkey.<domain>`.
    #[arg(long, short)]
    pub selector: String,
    /// Key algorithm: rsa (2048-bit, rsa-sha256) or ed25519 (RFC 8463). Default: the
    /// config entry's, else rsa (what every verifier understands).
    #[arg(long, value_enum)]
    pub algo: Option<Algo>,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Rsa,
    Ed25519,
}

impl From<Algo> for DkimAlgorithm {
    fn from(a: Algo) -> Self {
        match a {
            Algo::Rsa => DkimAlgorithm::Rsa,
            Algo::Ed25519 => DkimAlgorithm::Ed25519,
        }
    }
}

pub fn run(args: &DkimArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        DkimCommand::Keygen(k) => keygen(k),
    }
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let domain = args
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let selector = args.selector.trim().to_string();
    if !is_dns_label_path(&domain) || !domain.contains('.') {
        bail!("{:?} is not a domain name", args.domain);
    }
    if !is_dns_label_path(&selector) {
        bail!(
            "{:?} is not a valid selector (DNS labels: letters, digits, '-', '.')",
            args.selector
        );
    }
    let config = args.config.load()?;
    let entry = config
        .dkim
        .keys
        .iter()
        .find(|k| k.domain.eq_ignore_ascii_case(&domain) && k.selector == selector);
    let algorithm = match (entry, args.algo) {
        (Some(e), Some(a)) if e.algorithm != DkimAlgorithm::from(a) => bail!(
            "the config's [[dkim.keys]] entry for {selector}._domainkey.{domain} says algorithm = \"{}\"",
            e.algorithm.key_type()
        ),
        (Some(e), _) => e.algorithm,
        (None, a) => a.map_or(DkimAlgorithm::Rsa, DkimAlgorithm::from),
    };
    let path = match entry {
        Some(e) => e.key_path(&config.server.data_dir),
        None => crate::config::default_key_path(&config.server.data_dir, &domain, &selector),
    };
    let key = keys::generate_to(&path, algorithm)
        .with_context(|| format!("generating the {} key", algorithm.key_type()))?;
    println!("Private key written to {}", path.display());
    println!();
    println!("Publish this TXT record:");
    println!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        zone_strings(&key.dns_record())
    );
    if entry.is_none() {
        println!();
        println!("Add to the config:");
        println!("[[dkim.keys]]");
        println!("domain = \"{domain}\"");
        println!("selector = \"{selector}\"");
        println!("algorithm = \"{}\"", algorithm.key_type());
    }
    Ok(ExitCode::SUCCESS)
}

/// A TXT value in zone-file syntax: one quoted string when it fits 255 octets, else split
/// into several character-strings in parentheses (RFC 1035 §3.3.14; verifiers join them,
/// RFC 6376 §3.6.2.2).
pub fn zone_strings(value: &str) -> String {
    if value.len() <= 255 {
        return format!("\"{value}\"");
    }
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("( {} )", parts.join(" "))
}

fn is_dns_label_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_split_into_character_strings() {
        assert_eq!(zone_strings("v=DKIM1; p=x"), "\"v=DKIM1; p=x\"");
        let long = "a".repeat(300);
        let z = zone_strings(&long);
        assert!(z.starts_with("( \"") && z.ends_with("\" )"), "{z}");
        assert_eq!(z.matches('"').count(), 4);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_dns_label_path("s1"));
        assert!(is_dns_label_path("mail.example.test"));
        assert!(!is_dns_label_path("a..b"));
        assert!(!is_dns_label_path("a b"));
        assert!(!is_dns_label_path(""));
    }
}
