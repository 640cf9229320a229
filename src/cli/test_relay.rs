//! `mxgate test-relay NAME [--config PATH]`: the "Test Connection" button for a smart host.
//! Connects, does TLS as configured (certificate checked unless `tls_verify = false`),
//! EHLO, AUTH with the configured credentials, QUIT. Prints `OK ...` and exits 0, or
//! `FAIL <host>: <precise failure>` (refused, timeout, TLS/certificate, auth) and exits 1.

use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct TestRelayArgs {
    /// `name` of a `[[relay.smarthosts]]` entry.
    pub name: String,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: &TestRelayArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(crate::delivery::relay::probe_smarthost(&config, &args.name)) {
        Ok(report) => {
            println!("OK {report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAIL {e}");
            Ok(ExitCode::from(1))
        }
    }
}
