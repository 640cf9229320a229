//! The command line (SPEC "Command line"): one file per subcommand.

mod admin_client;
mod check_config;
pub mod classify;
pub mod dkim;
pub mod dns_check;
mod hash_password;
mod queue;
mod reload;
mod serve;
mod suppress;
mod suspend;
mod test_relay;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mxgate",
    // build.rs: the crate version, with the git commit when built from a checkout.
    version = env!("MXGATE_VERSION"),
    about = "Mail server for an ERP's alias domain"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the SMTP listeners, the delivery workers and the admin HTTP server.
    Serve(ConfigArg),
    /// Validate a config file; lists every problem with file:line, exit 1 on any.
    CheckConfig(ConfigArg),
    /// Read a password (stdin or prompt) and print its argon2 hash for the config.
    HashPassword,
    /// Parse bounce messages (DSNs) offline and classify them.
    Classify(classify::ClassifyArgs),
    /// Inspect and act on the running server's queue (list, show, retry, cancel).
    Queue(queue::QueueArgs),
    /// Outbound DKIM keys: `dkim keygen DOMAIN --selector S [--algo rsa|ed25519]`.
    Dkim(dkim::DkimArgs),
    /// Check DOMAIN's MX, SPF, DKIM and DMARC records against this server's config.
    DnsCheck(dns_check::DnsCheckArgs),
    /// Make the running server read its config file again (as SIGHUP does); prints what
    /// changed or every problem (file:line), exit 1 when the config was refused.
    Reload(admin_client::AdminArgs),
    /// List, add or remove suppressed recipients on the running server.
    Suppress(suppress::SuppressArgs),
    /// List or lift sending domains suspended for their bounce rate on the running server.
    Suspend(suspend::SuspendArgs),
    /// "Test Connection" for smart host NAME: connect, TLS, AUTH, QUIT; prints the result.
    TestRelay(test_relay::TestRelayArgs),
}

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// Config file. Default: conf/mxgate.toml (the embedded default when that is absent).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub const DEFAULT_CONFIG_PATH: &str = "conf/mxgate.toml";

impl ConfigArg {
    /// Loads the named file, or the default path, or the embedded default.
    pub fn load(&self) -> Result<crate::config::Config, crate::config::ConfigError> {
        use crate::config::Config;
        match &self.config {
            Some(path) => Config::load(path),
            None => {
                let path = std::path::Path::new(DEFAULT_CONFIG_PATH);
                if path.exists() {
                    Config::load(path)
                } else {
                    Config::from_toml(
                        crate::config::DEFAULT_TOML,
                        std::path::Path::new("<embedded default>"),
                    )
                }
            }
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(c) => serve::run(&c),
        Command::CheckConfig(c) => Ok(check_config::run(&c)),
        Command::HashPassword => hash_password::run(),
        Command::Classify(args) => classify::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Queue(args) => queue::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Dkim(args) => dkim::run(&args),
        Command::DnsCheck(args) => dns_check::run(&args),
        Command::Reload(args) => reload::run(&args),
        Command::Suppress(args) => suppress::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Suspend(args) => suspend::run(&args).map(|()| ExitCode::SUCCESS),
        Command::TestRelay(args) => test_relay::run(&args),
    }
}
