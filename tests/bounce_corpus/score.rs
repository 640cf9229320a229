//! Accuracy counters over labelled emails: category, status code, reply code, is_bounce,
//! with the confusion matrix and the list of misses.

use std::collections::BTreeMap;

use mxgate::bounce;
use serde_json::Value;

/// sisimai's internal pseudo codes (X.0.9NN) never appear in mail: not scored.
fn is_pseudo(status: &str) -> bool {
    let parts: Vec<&str> = status.split('.').collect();
    parts.len() == 3 && parts[1] == "0" && parts[2].len() == 3 && parts[2].starts_with('9')
}

#[derive(Default)]
pub struct Score {
    pub emails: usize,
    pub cat_total: usize,
    pub cat_ok: usize,
    pub status_total: usize,
    pub status_ok: usize,
    pub reply_total: usize,
    pub reply_ok: usize,
    pub false_pos: usize,
    pub false_neg: usize,
    pub hard_total: usize,
    pub hard_ok: usize,
    pub confusion: BTreeMap<(String, String), usize>,
    pub misses: Vec<String>,
}

pub fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

impl Score {
    /// Scores one report against its label; `rule` names what decided (for the misses).
    pub fn add(&mut self, label: &Value, report: &bounce::BounceReport, rule: &str) {
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
        self.score_category(file, label, first, rule);
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
        rule: &str,
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
            let diag: String = diag.chars().take(140).collect();
            self.misses.push(format!(
                "{file}: category want {want} ({}) got {got} ({reason}, {rule}) :: {diag}",
                label["reason"].as_str().unwrap_or("")
            ));
        }
    }

    pub fn category(&self) -> f64 {
        self.cat_ok as f64 / self.cat_total.max(1) as f64
    }

    pub fn print(&self, title: &str) {
        println!("{title}: {} emails", self.emails);
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
            "  is_bounce: {} false positives, {} false negatives",
            self.false_pos, self.false_neg
        );
        println!("  confusion (label -> predicted: count), off-diagonal only:");
        for ((want, got), n) in &self.confusion {
            if want != got {
                println!("    {want:>16} -> {got:<16} {n}");
            }
        }
        println!("  misses:");
        for m in &self.misses {
            println!("    {m}");
        }
    }
}
