//! `mxgate queue list [--state S] [--json] | show ID | retry ID|--failed | cancel ID |
//! hold ID | release ID | redeliver ID`, through the running server's admin API.

use anyhow::bail;
use clap::Subcommand;
use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient};

#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// List queued messages, optionally only those with a recipient in STATE.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one message with every recipient's state and last reply.
    Show { id: String },
    /// Requeue a message's failed recipients now, or with --failed every failed recipient.
    Retry {
        id: Option<String>,
        #[arg(long)]
        failed: bool,
    },
    /// Cancel a message's pending (or held) recipients.
    Cancel { id: String },
    /// Hold a message's pending recipients: no delivery until released (postsuper -h).
    Hold { id: String },
    /// Release a held message: its recipients are delivered now (postsuper -H).
    Release { id: String },
    /// Deliver an inbound message again to the ERP: its sent recipients back in the queue.
    Redeliver { id: String },
}

pub fn run(args: &QueueArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    match &args.action {
        QueueAction::List { state, json } => {
            let path = match state {
                Some(s) => format!("/api/queue?state={s}"),
                None => "/api/queue".to_string(),
            };
            let v = client.call("GET", &path)?;
            if *json {
                println!("{v}");
            } else {
                print_table(&v);
            }
        }
        QueueAction::Show { id } => {
            let v = client.call("GET", &format!("/api/queue/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        QueueAction::Retry {
            id: Some(id),
            failed: false,
        } => {
            let v = client.call("POST", &format!("/api/queue/{id}/retry"))?;
            println!("{id}: {} recipient(s) requeued", v["retried"]);
        }
        QueueAction::Retry {
            id: None,
            failed: true,
        } => {
            let v = client.call("POST", "/api/queue/retry-failed")?;
            println!("{} recipient(s) requeued", v["retried"]);
        }
        QueueAction::Retry { .. } => bail!("give either a queue id or --failed"),
        QueueAction::Cancel { id } => action(&client, id, "cancel", "cancelled")?,
        QueueAction::Hold { id } => action(&client, id, "hold", "held")?,
        QueueAction::Release { id } => action(&client, id, "release", "released")?,
        QueueAction::Redeliver { id } => action(&client, id, "redeliver", "redelivered")?,
    }
    Ok(())
}

/// `POST /api/queue/{id}/{verb}`, then "{id}: N recipient(s) {done}".
fn action(client: &AdminClient, id: &str, verb: &str, done: &str) -> anyhow::Result<()> {
    let v = client.call("POST", &format!("/api/queue/{id}/{verb}"))?;
    println!("{id}: {} recipient(s) {done}", v[done]);
    Ok(())
}

/// One line per recipient: id, state, attempts, address, last reply.
fn print_table(v: &Value) {
    let empty = Vec::new();
    let msgs = v["messages"].as_array().unwrap_or(&empty);
    println!(
        "{:<16}  {:<9}  {:>3}  {:<32}  LAST REPLY",
        "ID", "STATE", "TRY", "RECIPIENT"
    );
    for m in msgs {
        let id = m["id"].as_str().unwrap_or("?");
        for r in m["recipients"].as_array().unwrap_or(&empty) {
            println!(
                "{:<16}  {:<9}  {:>3}  {:<32}  {}",
                id,
                r["state"].as_str().unwrap_or("?"),
                r["attempts"].as_u64().unwrap_or(0),
                r["address"].as_str().unwrap_or("?"),
                r["last_reply"].as_str().unwrap_or("")
            );
        }
    }
}
