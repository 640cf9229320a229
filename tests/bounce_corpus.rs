//! Scorer over the shared labelled bounce corpus (`shared/corpus/bounces` beside the
//! checkout or the worktree, or the directory in `MXGATE_BOUNCE_CORPUS`).
//!
//! Two measurements. With every rule on: category, status-code, reply-code accuracy,
//! is_bounce errors (goals of issue 5). Leave-one-family-out (issue 14): each MTA family
//! (the label's `family`, the unit the corpus was split by) is classified with every learned
//! rule switched off that matches mail of that family only — the rules that were, in
//! effect, written for it — so the family is read as if it had never been seen. Standard
//! rules (RFC 3463 table, reply codes, SMTP stage) stay on: no family taught them. Prints
//! per-family figures, the rules that decide in one family only and the rules only one
//! sample needs.
//!
//! The corpus stays outside the repository; without it the tests say so and pass.
//! Run: `cargo test --test bounce_corpus -- --nocapture`.

#[path = "bounce_corpus/score.rs"]
mod score;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mxgate::bounce::{self, RuleId, Rules};
use score::{Score, pct};
use serde_json::Value;

fn corpus_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MXGATE_BOUNCE_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A checkout has shared/ beside it; a worktree under wt/ one level further up.
    ["../shared/corpus/bounces", "../../shared/corpus/bounces"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.join("labels.jsonl").is_file())
}

struct Sample {
    label: Value,
    family: String,
    raw: Vec<u8>,
}

fn load() -> Option<Vec<Sample>> {
    let Some(dir) = corpus_dir() else {
        println!("bounce corpus not found (set MXGATE_BOUNCE_CORPUS); skipping");
        return None;
    };
    let labels = std::fs::read_to_string(dir.join("labels.jsonl")).expect("labels readable");
    let samples = labels
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let label: Value = serde_json::from_str(line).expect("labels.jsonl line is JSON");
            let file = label["file"].as_str().expect("label has a file");
            let raw = std::fs::read(dir.join(file)).expect("labelled email is readable");
            let family = label["family"].as_str().unwrap_or("?").to_owned();
            Sample { label, family, raw }
        })
        .collect();
    Some(samples)
}

/// What the all-rules run saw: per learned rule, the families and samples it matched in.
#[derive(Default)]
struct RuleUse {
    families: BTreeMap<RuleId, BTreeSet<String>>,
    samples: BTreeMap<RuleId, BTreeSet<usize>>,
    /// The rule that decided each sample's first failed recipient.
    decided: Vec<Option<RuleId>>,
}

fn all_rules_run(samples: &[Sample]) -> (Score, RuleUse) {
    let mut score = Score::default();
    let mut uses = RuleUse::default();
    for (i, s) in samples.iter().enumerate() {
        let (report, traces) = bounce::parse_traced(&s.raw, &Rules::all());
        let decided = traces.first().map(|t| t.decided);
        let rule = decided.map_or(String::new(), |r| r.to_string());
        score.add(&s.label, &report, &rule);
        uses.decided.push(decided);
        for rule in traces.iter().flat_map(|t| &t.matched) {
            if rule.is_standard() {
                continue;
            }
            uses.families
                .entry(*rule)
                .or_default()
                .insert(s.family.clone());
            uses.samples.entry(*rule).or_default().insert(i);
        }
    }
    (score, uses)
}

/// The learned rules that matched `s` with every rule on, each with the number of families
/// it matches in: tells a miss whose rule is off (its own family only) from one no rule reads.
fn matched_elsewhere(s: &Sample, uses: &RuleUse) -> String {
    let (_, traces) = bounce::parse_traced(&s.raw, &Rules::all());
    let list: Vec<String> = traces
        .iter()
        .take(1)
        .flat_map(|t| &t.matched)
        .filter(|r| !r.is_standard())
        .map(|r| format!("{r}[{}]", uses.families.get(r).map_or(0, BTreeSet::len)))
        .collect();
    format!("matched: {}", list.join(", "))
}

/// Classifies each family with the learned rules only it matches switched off.
fn leave_one_family_out(samples: &[Sample], uses: &RuleUse) -> BTreeMap<String, (Score, usize)> {
    let families: BTreeSet<&str> = samples.iter().map(|s| s.family.as_str()).collect();
    let mut out = BTreeMap::new();
    for fam in families {
        let own: Vec<RuleId> = uses
            .families
            .iter()
            .filter(|(_, f)| f.len() == 1 && f.contains(fam))
            .map(|(r, _)| *r)
            .collect();
        let n_off = own.len();
        let rules = Rules::without(own);
        let mut score = Score::default();
        for s in samples.iter().filter(|s| s.family == fam) {
            let (report, traces) = bounce::parse_traced(&s.raw, &rules);
            let rule = traces.first().map_or(String::new(), |t| {
                format!("{}; {}", t.decided, matched_elsewhere(s, uses))
            });
            score.add(&s.label, &report, &rule);
        }
        out.insert(fam.to_owned(), (score, n_off));
    }
    out
}

fn print_families(all: &BTreeMap<String, Score>, lofo: &BTreeMap<String, (Score, usize)>) {
    println!("per family (category all rules | leave-one-family-out; status, reply, is_bounce):");
    println!(
        "  {:<16} {:>4} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "family", "n", "cat", "cat-lofo", "status", "reply", "is_bounce", "rules-off"
    );
    for (fam, (l, off)) in lofo {
        let a = &all[fam];
        let ok_bounce = l.emails - l.false_pos - l.false_neg;
        println!(
            "  {fam:<16} {:>4} {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>8.1}% {off:>9}",
            l.emails,
            pct(a.cat_ok, a.cat_total),
            pct(l.cat_ok, l.cat_total),
            pct(l.status_ok, l.status_total),
            pct(l.reply_ok, l.reply_total),
            pct(ok_bounce, l.emails),
        );
    }
}

/// Learned rules that decide in one family only, and those only one sample matches.
fn print_smells(samples: &[Sample], uses: &RuleUse) {
    let mut deciding: BTreeMap<RuleId, BTreeSet<&str>> = BTreeMap::new();
    for (i, rule) in uses.decided.iter().enumerate() {
        if let Some(r) = rule.filter(|r| !r.is_standard()) {
            deciding.entry(r).or_default().insert(&samples[i].family);
        }
    }
    println!("learned rules deciding in one family only (rule: family, samples it matches):");
    for (rule, fams) in deciding.iter().filter(|(_, f)| f.len() == 1) {
        let n = uses.samples.get(rule).map_or(0, BTreeSet::len);
        let fam = fams.iter().next().copied().unwrap_or("?");
        let one = if n == 1 { "  <- only one sample" } else { "" };
        println!("    {rule}: {fam}, {n}{one}");
    }
}

#[test]
fn shared_corpus_meets_the_accuracy_goals() {
    let Some(samples) = load() else { return };
    let (score, _) = all_rules_run(&samples);
    score.print("bounce corpus, every rule on");
    let status = score.status_ok as f64 / score.status_total.max(1) as f64;
    let errors = (score.false_pos + score.false_neg) as f64 / score.emails.max(1) as f64;
    assert!(score.category() >= 0.95, "category accuracy < 95%");
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
    assert_eq!(score.false_pos, 0, "a non-bounce was read as a bounce");
}

#[test]
fn leave_one_family_out_category_accuracy_is_at_least_95_percent() {
    let Some(samples) = load() else { return };
    let (_, uses) = all_rules_run(&samples);
    let mut all: BTreeMap<String, Score> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        let report = bounce::parse(&s.raw);
        let rule = uses.decided[i].map_or(String::new(), |r| r.to_string());
        all.entry(s.family.clone())
            .or_default()
            .add(&s.label, &report, &rule);
    }
    let lofo = leave_one_family_out(&samples, &uses);
    let mut total = Score::default();
    for (score, _) in lofo.values() {
        total.emails += score.emails;
        total.cat_ok += score.cat_ok;
        total.cat_total += score.cat_total;
        total.status_ok += score.status_ok;
        total.status_total += score.status_total;
        total.reply_ok += score.reply_ok;
        total.reply_total += score.reply_total;
        total.false_pos += score.false_pos;
        total.false_neg += score.false_neg;
        total.misses.extend(score.misses.iter().cloned());
    }
    print_families(&all, &lofo);
    print_smells(&samples, &uses);
    total.print("bounce corpus, leave-one-family-out");
    assert!(
        total.category() >= 0.95,
        "leave-one-family-out category accuracy {:.2}% < 95%",
        total.category() * 100.0
    );
    assert_eq!(total.false_pos, 0, "a non-bounce was read as a bounce");
}
