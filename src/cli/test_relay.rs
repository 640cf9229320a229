//! `mxgate test-relay NAME [--config PATH]`: the "Test Connection" button for a smart host.
//! Gets an OAuth2 token for an `auth = "xoauth2"` host, connects, does TLS as configured
//! (certificate checked unless `tls_verify = false`), EHLO, AUTH with the configured
//! credentials, QUIT. Prints `OK ...` and exits 0, or `FAIL <host>: <precise failure>`
//! (token endpoint, refused, timeout, TLS/certificate, auth) and exits 1; below that
//! line, one indented line per step done (the token endpoint, its HTTP status and the
//! token's expiry — never the token — connect, greeting, EHLO, STARTTLS, AUTH).

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
    let (result, steps) =
        runtime.block_on(crate::delivery::relay::probe_smarthost(&config, &args.name));
    let code = match result {
        Ok(report) => {
            println!("OK {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAIL {e}");
            ExitCode::from(1)
        }
    };
    for step in steps {
        println!("  {step}");
    }
    Ok(code)
}
