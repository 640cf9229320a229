//! `mxgate reload`: `POST /api/reload` on the running server, which reads its config file
//! again (what `SIGHUP` does, with the answer shown). Prints the outcome, the keys that
//! wait for a restart, or every problem as `file:line: key: message`; exits 1 when the
//! config was refused (the server keeps running on the config it had).

use std::process::ExitCode;

use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient};

pub fn run(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(args)?;
    let (status, report) = client.call_any("POST", "/api/reload")?;
    let applied = report["applied"].as_bool() == Some(true);
    if report.get("message").is_none() {
        // Not a reload report (an older server, a wrong --admin URL, a bad token).
        anyhow::bail!("POST /api/reload: HTTP {status}: {report}");
    }
    print_report(&report);
    Ok(if applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    if let Some(file) = report["file"].as_str() {
        println!("file: {file}");
    }
    println!(
        "applied: {}",
        if report["applied"] == true {
            "yes"
        } else {
            "no"
        }
    );
    let restart: Vec<String> = list(&report["restart_needed"]).iter().map(text).collect();
    if !restart.is_empty() {
        println!("restart needed for: {} (applied: no)", restart.join(", "));
    }
    for p in list(&report["problems"]) {
        eprintln!("{}", text(&p));
    }
    if report["applied"] == true {
        println!("{}", text(&report["message"]));
    } else {
        eprintln!("{}", text(&report["message"]));
    }
}
