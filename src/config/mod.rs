//! Configuration: one struct per SPEC section, loaded from TOML in two phases.
//!
//! 1. Deserialize (`deny_unknown_fields` everywhere, value types parse their strings) —
//!    a syntax or type error is one [`Problem`] with its line.
//! 2. [`Config::validate`] — every semantic problem (unknown route names, duplicate ports,
//!    aliases outside the alias domains, ...) with the line of the offending key.
//!
//! `check-config` prints all problems; `serve` refuses to start on any, and a reload keeps
//! the running config on any. After load a config is immutable and shared as `Arc<Config>`;
//! a reload replaces it whole.

mod auth;
mod cluster;
mod dnsbl;
mod endpoints;
mod events;
mod oauth2;
mod outbound_tls;
mod queue;
mod rates;
mod relay;
mod routing;
mod server;
mod spam;
mod store;
mod streams;
mod suspension;
mod types;
mod validate;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use auth::{
    AuthConfig, DkimAlgorithm, DkimConfig, DkimKeyConfig, TempErrorAction, covering_domain,
    default_key_path,
};
pub use cluster::ClusterConfig;
pub use dnsbl::{DnsblAction, DnsblConfig};
pub use endpoints::{CaFile, HostAddr, HttpsTrust, OdooUrl, SenderFilter, WebhookUrl};
pub use events::EventsConfig;
pub use outbound_tls::{MtaStsConfig, TlsPolicyOverride, TlsRptConfig};
pub use queue::QueueConfig;
pub use rates::{RateLimits, RatesConfig};
pub use relay::{
    FromAlignment, ProviderRate, RelayConfig, Security, SmarthostAuth, SmarthostConfig,
    SubmissionConfig, SubmissionUser, WarmingConfig, WarmingStep,
};
pub use routing::{
    AliasConfig, AutoReplies, DomainConfig, ForwardRoute, HttpRoute, MaildirRoute, OdooRoute,
    RejectRoute, RouteConfig, Routes,
};
pub use server::{
    AdminConfig, DnsConfig, ListenerConfig, ListenersConfig, ServerConfig, SmtpConfig, TlsConfig,
};
pub use spam::{SpamConfig, SpamMode, SpamOnError};
pub use store::StoreConfig;
pub use streams::{PoolIp, StreamsConfig};
pub use suspension::SuspensionConfig;
pub use types::{ByteSize, HumanDuration, Secret};
pub use values::{Date, DayRange, HttpUrl, Parsed};

/// The embedded default, identical to `conf/mxgate.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../conf/mxgate.toml");

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub listeners: ListenersConfig,
    pub smtp: SmtpConfig,
    pub admin: AdminConfig,
    pub tls: TlsConfig,
    pub dns: DnsConfig,
    pub domains: Vec<DomainConfig>,
    pub aliases: Vec<AliasConfig>,
    pub routes: Routes,
    pub submission: SubmissionConfig,
    pub relay: RelayConfig,
    pub warming: WarmingConfig,
    pub queue: QueueConfig,
    /// Inbound SPF/DKIM/DMARC/ARC/iprev switches (issue 3).
    pub auth: AuthConfig,
    /// Outbound DKIM signing keys (issue 3).
    pub dkim: DkimConfig,
    /// Delivery events webhook to the ERP (`[events]`).
    pub events: EventsConfig,
    /// Automatic suspension of sending domains by bounce rate (`[suspension]`, issue 6).
    pub suspension: SuspensionConfig,
    /// Email types (transactional / mass) of submitted mail (`[streams]`, issue 6).
    pub streams: StreamsConfig,
    /// The one RocksDB's memory bound (`[store]`).
    pub store: StoreConfig,
    /// Inbound spam defences (`[spam]`, issue 16): rspamd, and the DNSBLs asked at connect.
    pub spam: SpamConfig,
    /// Shared state of several nodes on Redis (`[cluster]`, issue 18).
    pub cluster: ClusterConfig,
    /// Per-client connection, message and recipient rates (`[rates]`, issue 16).
    pub rates: RatesConfig,
    /// The file this config was read from, what a reload reads again; `None` for a config
    /// built from text (the embedded default, tests).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// One thing wrong with a config file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `aliases[2].route`.
    pub path: String,
    /// 1-based line in the file, when the key is present in it.
    pub line: Option<usize>,
    pub message: String,
}

/// Loading failed: every problem found, in file order.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One problem about `key` of `file`, at the key's line when the file names it: a value
    /// that parsed but does not work (a certificate that does not load, a DKIM key file).
    pub fn at_key(file: &Path, key: &str, message: String) -> ConfigError {
        let line = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| validate::line_of(&text, key));
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                path: key.to_string(),
                line,
                message,
            }],
        }
    }

    /// Every problem as `file:line: key: message`, in file order.
    pub fn lines(&self) -> Vec<String> {
        let file = self.file.display();
        self.problems
            .iter()
            .map(|p| match p.line {
                Some(line) => format!("{file}:{line}: {}: {}", p.path, p.message),
                None => format!("{file}: {}: {}", p.path, p.message),
            })
            .collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                path: String::new(),
                line: None,
                message: format!("cannot read config: {e}"),
            }],
        })?;
        let mut config = Config::from_toml(&text, path)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates TOML text; `file` is only used in messages.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let err = |problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        };
        let config: Config =
            toml::from_str(text).map_err(|e| err(vec![syntax_problem(text, &e)]))?;
        let mut problems = config.validate();
        if problems.is_empty() {
            return Ok(config);
        }
        for p in &mut problems {
            p.line = validate::line_of(text, &p.path);
        }
        Err(err(problems))
    }

    /// What is valid but will not work as one may expect: `mxgate check-config` prints
    /// these as `key: warning: message` and still exits 0.
    pub fn warnings(&self) -> Vec<(String, String)> {
        outbound_tls::warnings(self)
    }

    /// Domain of VERP and SRS envelope senders: `relay.bounce_domain`, else the first alias
    /// domain, else `server.hostname`.
    pub fn bounce_domain(&self) -> &str {
        let d = self.relay.bounce_domain.trim();
        if !d.is_empty() {
            return d;
        }
        self.domains
            .first()
            .map_or(self.server.hostname.as_str(), |d| d.name.as_str())
    }

    /// The route a name refers to (validated to exist at load).
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.get(name)
    }

    /// The `[[domains]]` entry of `address`'s domain (case-insensitive).
    pub fn domain_of(&self, address: &str) -> Option<&DomainConfig> {
        let (_, domain) = address.rsplit_once('@')?;
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(domain))
    }
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    Problem {
        path: String::new(),
        line,
        message: e.message().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_loads_and_validates() {
        let c = Config::from_toml(DEFAULT_TOML, Path::new("conf/mxgate.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.hostname, "mx.example.test");
        assert!(c.listeners.inbound.is_some());
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = Config::from_toml(
            "[server]\nhostname = \"a\"\nbogus = 1\n",
            Path::new("x.toml"),
        )
        .expect_err("unknown key");
        assert_eq!(e.problems[0].line, Some(3), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn bad_duration_is_an_error() {
        let e = Config::from_toml("[smtp]\nidle_timeout = \"soon\"\n", Path::new("x.toml"))
            .expect_err("bad value");
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }
}
