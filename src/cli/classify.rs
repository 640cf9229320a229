//! `mxgate classify FILE... [--json]`: offline DSN / bounce classification (SPEC "Command
//! line"). With `--json`, one JSON object per file per line; the top-level fields describe
//! the first failed recipient. Without, one readable line per file.
//!
//! An unreadable file is reported on stderr with its path and cause; the others are still
//! classified, and the command fails at the end.

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use serde::Serialize;

use crate::bounce::{self, BounceReport, RecipientResult};

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Bounce messages (raw RFC 5322 files: .eml, maildir entries).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// One JSON object per file per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The JSON line of one file (field names fixed by SPEC).
#[derive(Serialize)]
struct Line<'a> {
    file: String,
    is_bounce: bool,
    category: Option<&'static str>,
    status: Option<&'a str>,
    reply_code: Option<String>,
    provider: &'static str,
    hard: bool,
    kind: bounce::ReportKind,
    feedback_type: Option<&'a str>,
    recipients: Vec<Rcpt<'a>>,
}

#[derive(Serialize)]
struct Rcpt<'a> {
    address: &'a str,
    status: Option<&'a str>,
    reply_code: Option<String>,
    category: Option<&'static str>,
    hard: bool,
    diagnostic: &'a str,
}

impl<'a> Rcpt<'a> {
    fn new(r: &'a RecipientResult) -> Rcpt<'a> {
        Rcpt {
            address: &r.address,
            status: r.status.as_deref(),
            reply_code: r.reply_code.map(|c| c.to_string()),
            category: r.category.map(|c| c.as_str()),
            hard: r.hard,
            diagnostic: &r.diagnostic,
        }
    }
}

fn line<'a>(file: String, report: &'a BounceReport) -> Line<'a> {
    let first = report.first_failed().filter(|_| report.is_bounce);
    Line {
        file,
        is_bounce: report.is_bounce,
        category: first.and_then(|r| r.category).map(|c| c.as_str()),
        status: first.and_then(|r| r.status.as_deref()),
        reply_code: first.and_then(|r| r.reply_code).map(|c| c.to_string()),
        provider: report.provider.as_label(),
        hard: first.is_some_and(|r| r.hard),
        kind: report.kind,
        feedback_type: report.feedback_type.as_deref(),
        recipients: report.recipients.iter().map(Rcpt::new).collect(),
    }
}

/// Classifies every file; fails after the last one if any could not be read.
pub fn run(args: &ClassifyArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    for path in &args.files {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("mxgate classify: cannot read {}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        let report = bounce::parse(&raw);
        let l = line(path.display().to_string(), &report);
        if args.json {
            serde_json::to_writer(&mut out, &l)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", table_row(&l))?;
        }
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} of {} file(s) could not be read", args.files.len());
    }
    Ok(())
}

/// `FILE  KIND  CATEGORY  STATUS  CODE  PROVIDER  hard|soft  ADDRESS`.
fn table_row(l: &Line<'_>) -> String {
    let kind = match l.kind {
        bounce::ReportKind::Bounce => "bounce",
        bounce::ReportKind::Complaint => "complaint",
        bounce::ReportKind::AutoReply => "auto-reply",
        bounce::ReportKind::DeliveryNotice => "delivered",
        bounce::ReportKind::NotBounce => "not-bounce",
    };
    let first = l.recipients.iter().find(|r| r.category.is_some());
    format!(
        "{}\t{kind}\t{}\t{}\t{}\t{}\t{}\t{}",
        l.file,
        l.category.unwrap_or("-"),
        l.status.unwrap_or("-"),
        l.reply_code.as_deref().unwrap_or("-"),
        l.provider,
        if l.hard { "hard" } else { "soft" },
        first.map_or("-", |r| r.address),
    )
}
