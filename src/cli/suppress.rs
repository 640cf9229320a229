//! `mxgate suppress list [--source S] [--json] | add ADDR [--reason R] | remove ADDR`,
//! through the running server's admin API (`/api/suppressions`).

use clap::Subcommand;
use serde_json::{Value, json};

use super::admin_client::{AdminArgs, AdminClient};

#[derive(clap::Args, Debug)]
pub struct SuppressArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub action: SuppressAction,
}

#[derive(Subcommand, Debug)]
pub enum SuppressAction {
    /// List suppressed addresses with reason, source and time.
    List {
        /// Only entries from this source: bounce, complaint, unsubscribe, manual.
        #[arg(long)]
        source: Option<String>,
        /// One JSON object per entry per line.
        #[arg(long)]
        json: bool,
    },
    /// Suppress an address (mail to it is refused at submission).
    Add {
        address: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the suppression of an address.
    Remove { address: String },
}

/// Entries fetched per API call while listing.
const PAGE: usize = 1000;

pub fn run(args: &SuppressArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    match &args.action {
        SuppressAction::List { source, json } => list(&client, source.as_deref(), *json)?,
        SuppressAction::Add { address, reason } => {
            let mut body = json!({ "address": address });
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let v = client.call_json("POST", "/api/suppressions", &body)?;
            println!(
                "{} suppressed ({})",
                v["address"].as_str().unwrap_or(address),
                v["reason"].as_str().unwrap_or("")
            );
        }
        SuppressAction::Remove { address } => {
            let v = client.call_json(
                "DELETE",
                "/api/suppressions",
                &json!({ "address": address }),
            )?;
            println!(
                "{} no longer suppressed",
                v["address"].as_str().unwrap_or(address)
            );
        }
    }
    Ok(())
}

fn list(client: &AdminClient, source: Option<&str>, json: bool) -> anyhow::Result<()> {
    if !json {
        println!(
            "{:<40}  {:<11}  {:<20}  REASON",
            "ADDRESS", "SOURCE", "SINCE (UTC)"
        );
    }
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/api/suppressions?limit={PAGE}");
        if let Some(s) = source {
            path.push_str(&format!("&source={}", encode(s)));
        }
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", encode(a)));
        }
        let v = client.call("GET", &path)?;
        let entries = v["suppressions"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            if json {
                println!("{e}");
            } else {
                print_row(e);
            }
        }
        if entries.len() < PAGE {
            return Ok(());
        }
        after = entries
            .last()
            .and_then(|e| e["address"].as_str())
            .map(str::to_owned);
    }
}

fn print_row(e: &Value) {
    let since = e["created_ms"]
        .as_u64()
        .map_or_else(|| "?".to_owned(), format_utc);
    println!(
        "{:<40}  {:<11}  {:<20}  {}",
        e["address"].as_str().unwrap_or("?"),
        e["source"].as_str().unwrap_or("?"),
        since,
        e["reason"].as_str().unwrap_or("")
    );
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of milliseconds since the epoch (civil-from-days, H. Hinnant).
fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_query_values_are_formatted() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(encode("a+b@x.test"), "a%2Bb@x.test");
    }
}
