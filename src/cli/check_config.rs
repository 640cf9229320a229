//! `mxgate check-config [--config PATH]`: every problem as `file:line: key: message`.

use std::process::ExitCode;

use super::ConfigArg;

pub fn run(arg: &ConfigArg) -> ExitCode {
    match arg.load() {
        Ok(config) => {
            for (key, message) in config.warnings() {
                println!("{key}: warning: {message}");
            }
            println!("config OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.problems.len());
            ExitCode::from(1)
        }
    }
}
