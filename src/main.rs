//! The `mxgate` binary: parse the command line, run it, map failure to an exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mxgate::cli::Cli::parse();
    match mxgate::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mxgate: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
