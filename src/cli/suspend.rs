//! `mxgate suspend list [--json] | lift DOMAIN`: sending domains suspended for their bounce
//! rate, through the running server's admin API (`/api/suspensions`).

use clap::Subcommand;
use serde_json::json;

use super::admin_client::{AdminArgs, AdminClient};

#[derive(clap::Args, Debug)]
pub struct SuspendArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub action: SuspendAction,
}

#[derive(Subcommand, Debug)]
pub enum SuspendAction {
    /// List suspended sending domains with the reason.
    List {
        /// One JSON object per suspension per line.
        #[arg(long)]
        json: bool,
    },
    /// Lift the suspension of a sending domain (its mail is accepted again).
    Lift { domain: String },
}

pub fn run(args: &SuspendArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    match &args.action {
        SuspendAction::List { json } => {
            let v = client.call("GET", "/api/suspensions")?;
            let entries = v["suspensions"].as_array().cloned().unwrap_or_default();
            if !json {
                println!("{:<40}  REASON", "DOMAIN");
            }
            for e in &entries {
                if *json {
                    println!("{e}");
                } else {
                    println!(
                        "{:<40}  {}",
                        e["domain"].as_str().unwrap_or("?"),
                        e["reason"].as_str().unwrap_or("")
                    );
                }
            }
        }
        SuspendAction::Lift { domain } => {
            let v = client.call_json("DELETE", "/api/suspensions", &json!({ "domain": domain }))?;
            println!(
                "{} no longer suspended",
                v["domain"].as_str().unwrap_or(domain)
            );
        }
    }
    Ok(())
}
