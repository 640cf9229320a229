//! Scorer over the shared labelled bounce corpus (`../shared/corpus/bounces`, or the
//! directory in `MXGATE_BOUNCE_CORPUS`). Prints category accuracy, status-code and
//! reply-code extraction accuracy, is_bounce error rates and the confusion matrix, and holds
//! the goals of issue 5: category ≥ 95%, status ≥ 98%, is_bounce errors ≤ 1%.
//!
//! The corpus stays outside the repository; without it the test says so and passes.
//! Run: `cargo test --test bounce_corpus -- --nocapture`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mxgate::bounce;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    match std::env::var_os("MXGATE_BOUNCE_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/bounces"),
    }
}

/// sisimai's internal pseudo codes (X.0.9NN) never appear in mail: not scored.
fn is_pseudo(status: &str) -> bool {
    let parts: Vec<&str> = status.split('.').collect();
    parts.len() == 3 && parts[1] == "0" && parts[2].len() == 3 && parts[2].starts_with('9')
}

#[derive(Default)]
struct Score {
    emails: usize,
    cat_total: usize,
    cat_ok: usize,
    status_total: usize,
    status_ok: usize,
    reply_total: usize,
    reply_ok: usize,
    false_pos: usize,
    false_neg: usize,
    hard_total: usize,
    hard_ok: usize,
    confusion: BTreeMap<(String, String), usize>,
    misses: Vec<String>,
}

impl Score {
    fn add(&mut self, label: &Value, report: &bounce::BounceReport) {
        self.emails += 1;
        let file = label["file"].as_str().unwrap_or("?");
        let want_bounce = label["is_bounce"].as_bool().unwrap_or(false);
        if want_bounce != report.is_bounce {
            if report.is_bounce {
                self.false_pos += 1;
            } else {
                self.false_neg += 1;
            }
            self.misses.push(format!(
                "{file}: is_bounce want {want_bounce} got {}",
                report.is_bounce
            ));
        }
        if !want_bounce {
            return;
        }
        let first = report.first_failed();
        let want_rcpt = &label["recipients"][0];
        self.score_category(file, label, first);
        let got_status = first.and_then(|r| r.status.clone()).unwrap_or_default();
        let want_status = want_rcpt["status"].as_str().unwrap_or("");
        if !want_status.is_empty() && !is_pseudo(want_status) {
            self.status_total += 1;
            if got_status == want_status {
                self.status_ok += 1;
            } else {
                self.misses.push(format!(
                    "{file}: status want {want_status} got {got_status:?}"
                ));
            }
        }
        let got_reply = first
            .and_then(|r| r.reply_code)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let want_reply = want_rcpt["reply_code"].as_str().unwrap_or("");
        if !want_reply.is_empty() {
            self.reply_total += 1;
            if got_reply == want_reply {
                self.reply_ok += 1;
            } else {
                self.misses
                    .push(format!("{file}: reply want {want_reply} got {got_reply:?}"));
            }
        }
        if let (Some(h), Some(r)) = (want_rcpt["hardbounce"].as_bool(), first) {
            self.hard_total += 1;
            self.hard_ok += usize::from(h == r.hard);
        }
    }

    fn score_category(
        &mut self,
        file: &str,
        label: &Value,
        first: Option<&bounce::RecipientResult>,
    ) {
        let want = label["category"].as_str().unwrap_or("");
        if bounce::Category::from_name(want).is_none() {
            return;
        }
        let got = first
            .and_then(|r| r.category)
            .map_or("(none)", |c| c.as_str());
        let also: Vec<&str> = label["also_accept"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.cat_total += 1;
        *self
            .confusion
            .entry((want.to_owned(), got.to_owned()))
            .or_default() += 1;
        if got == want || also.contains(&got) {
            self.cat_ok += 1;
        } else {
            let reason = first.and_then(|r| r.reason).map_or("-", |r| r.as_str());
            let diag = first.map_or("", |r| r.diagnostic.as_str());
            let diag: String = diag.chars().take(160).collect();
            self.misses.push(format!(
                "{file}: category want {want} ({}) got {got} ({reason}) :: {diag}",
                label["reason"].as_str().unwrap_or("")
            ));
        }
    }

    fn print(&self) {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        println!("bounce corpus: {} emails", self.emails);
        println!(
            "  category accuracy : {}/{} = {:.2}%",
            self.cat_ok,
            self.cat_total,
            pct(self.cat_ok, self.cat_total)
        );
        println!(
            "  status accuracy   : {}/{} = {:.2}%",
            self.status_ok,
            self.status_total,
            pct(self.status_ok, self.status_total)
        );
        println!(
            "  reply-code accuracy: {}/{} = {:.2}%",
            self.reply_ok,
            self.reply_total,
            pct(self.reply_ok, self.reply_total)
        );
        println!(
            "  hard/soft accuracy : {}/{} = {:.2}%",
            self.hard_ok,
            self.hard_total,
            pct(self.hard_ok, self.hard_total)
        );
        println!(
            "  is_bounce: {} false positives, {} false negatives ({:.2}% errors)",
            self.false_pos,
            self.false_neg,
            100.0 - pct(self.emails - self.false_pos - self.false_neg, self.emails)
        );
        println!("  confusion (label -> predicted: count), off-diagonal only:");
        for ((want, got), n) in &self.confusion {
            if want != got {
                println!("    {want:>16} -> {got:<16} {n}");
            }
        }
        println!(
            "  diagonal: {}",
            self.confusion
                .iter()
                .filter(|((w, g), _)| w == g)
                .map(|((w, _), n)| format!("{w}={n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("  misses:");
        for m in &self.misses {
            println!("    {m}");
        }
    }
}

#[test]
fn shared_corpus_meets_the_accuracy_goals() {
    let dir = corpus_dir();
    let Ok(labels) = std::fs::read_to_string(dir.join("labels.jsonl")) else {
        println!(
            "bounce corpus not found at {} (set MXGATE_BOUNCE_CORPUS); skipping",
            dir.display()
        );
        return;
    };
    let mut score = Score::default();
    for line in labels.lines().filter(|l| !l.trim().is_empty()) {
        let label: Value = serde_json::from_str(line).expect("labels.jsonl line is JSON");
        let file = label["file"].as_str().expect("label has a file");
        let raw = std::fs::read(dir.join(file)).expect("labelled email is readable");
        score.add(&label, &bounce::parse(&raw));
    }
    score.print();
    let cat = score.cat_ok as f64 / score.cat_total.max(1) as f64;
    let status = score.status_ok as f64 / score.status_total.max(1) as f64;
    let errors = (score.false_pos + score.false_neg) as f64 / score.emails.max(1) as f64;
    assert!(cat >= 0.95, "category accuracy {:.2}% < 95%", cat * 100.0);
    assert!(
        status >= 0.98,
        "status accuracy {:.2}% < 98%",
        status * 100.0
    );
    assert!(
        errors <= 0.01,
        "is_bounce errors {:.2}% > 1%",
        errors * 100.0
    );
}
