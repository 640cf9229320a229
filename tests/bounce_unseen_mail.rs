//! Held-out check of issue 14 on WHOLE messages: bounces of MTA families and providers that
//! are not in the shared corpus (Sendmail, qmail, Courier, OpenSMTPD, Domino, Gmail, SES,
//! GMX/Web.de, Mail.ru, Biglobe, MessageLabs, ...) and non-bounces (auto-replies with and
//! without RFC 3834 headers, challenge-response, read receipts, people quoting a bounce),
//! in `tests/bounce_unseen_mail/` (see its README). The set was written before the parser
//! was tuned on it; fixes since go to general causes, never to one file.
//!
//! Scores category, enhanced status, reply code, the failed recipient's address and
//! bounce / non-bounce, per family, and prints every miss.
//! Run: `cargo test --test bounce_unseen_mail -- --nocapture`.

#[path = "bounce_corpus/score.rs"]
mod score;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mxgate::bounce;
use score::{Score, pct};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Address of the first failed recipient against the label's (when it names one).
fn score_address(
    label: &Value,
    report: &bounce::BounceReport,
    ok: &mut usize,
    total: &mut usize,
    misses: &mut Vec<String>,
) {
    let Some(want) = label["recipients"][0]["address"].as_str() else {
        return;
    };
    if !label["is_bounce"].as_bool().unwrap_or(false) {
        return;
    }
    *total += 1;
    let got = report.first_failed().map_or("", |r| r.address.as_str());
    if got.eq_ignore_ascii_case(want) {
        *ok += 1;
    } else {
        misses.push(format!(
            "{}: recipient want {want} got {got:?}",
            label["file"].as_str().unwrap_or("?")
        ));
    }
}

/// Scores every labelled message of `set` (a folder beside this file), printing per-family
/// figures and every miss; returns the totals and the recipient score (ok, total).
fn score_set(set: &str) -> (Score, usize, usize) {
    let dir = dir().join(set);
    let labels = std::fs::read_to_string(dir.join("labels.jsonl")).expect("labels readable");
    let mut total = Score::default();
    let mut families: BTreeMap<String, Score> = BTreeMap::new();
    let (mut addr_ok, mut addr_total, mut addr_misses) = (0, 0, Vec::new());
    for line in labels.lines().filter(|l| !l.trim().is_empty()) {
        let label: Value = serde_json::from_str(line).expect("labels.jsonl line is JSON");
        let file = label["file"].as_str().expect("label has a file");
        let raw = std::fs::read(dir.join(file)).expect("labelled email is readable");
        let (report, traces) = bounce::parse_traced(&raw, &bounce::Rules::all());
        let rule = traces
            .first()
            .map_or(String::new(), |t| t.decided.to_string());
        total.add(&label, &report, &rule);
        let family = label["family"].as_str().unwrap_or("?").to_owned();
        families
            .entry(family)
            .or_default()
            .add(&label, &report, &rule);
        score_address(
            &label,
            &report,
            &mut addr_ok,
            &mut addr_total,
            &mut addr_misses,
        );
    }
    println!("{set}: per family (category, status, reply, is_bounce):");
    for (fam, s) in &families {
        let ok_bounce = s.emails - s.false_pos - s.false_neg;
        println!(
            "  {fam:<16} {:>3} cat {:>3}/{:<3} status {:>3}/{:<3} reply {:>3}/{:<3} is_bounce {:>3}/{:<3} ({:.0}%)",
            s.emails,
            s.cat_ok,
            s.cat_total,
            s.status_ok,
            s.status_total,
            s.reply_ok,
            s.reply_total,
            ok_bounce,
            s.emails,
            pct(s.cat_ok, s.cat_total)
        );
    }
    total.print(set);
    println!(
        "  recipient accuracy: {addr_ok}/{addr_total} = {:.2}%",
        pct(addr_ok, addr_total)
    );
    for m in &addr_misses {
        println!("    {m}");
    }
    println!("  category {:.2}% (goal 95%)", total.category() * 100.0);
    (total, addr_ok, addr_total)
}

/// Fails when a set scores below its floors `[category, status, reply, recipients]` or reads
/// any non-bounce as a bounce or misses any bounce.
fn hold_floors(total: &Score, (addr_ok, addr_total): (usize, usize), floors: [usize; 4]) {
    let [cat, status, reply, addr] = floors;
    let (c, ct) = (total.cat_ok, total.cat_total);
    assert!(c >= cat, "category {c}/{ct} fell below {cat}");
    let (st, stt) = (total.status_ok, total.status_total);
    assert!(st >= status, "status {st}/{stt} fell below {status}");
    let (r, rt) = (total.reply_ok, total.reply_total);
    assert!(r >= reply, "reply {r}/{rt} fell below {reply}");
    let fp = total.false_pos;
    assert!(fp == 0, "{fp} non-bounces read as bounces (want none)");
    let fneg = total.false_neg;
    assert!(fneg == 0, "{fneg} bounces missed (want none)");
    assert!(
        addr_ok >= addr,
        "recipients {addr_ok}/{addr_total} fell below {addr}"
    );
}

#[test]
fn unseen_whole_messages_hold_their_scores() {
    let (total, addr_ok, addr_total) = score_set("bounce_unseen_mail");
    // Issue 14's goals: category >= 95%, status >= 98%, no non-bounce read as a bounce.
    // Scored as written (2026-12-06, before any tuning on this set): category 44/49, status
    // 38/39, reply 34/35, 1 false positive, 2 false negatives, recipients 47/49. After the
    // general fixes of round two (X.7 content refusals, people writing about a bounce, quoted
    // DSN fields only in notices, auto-forwarded bounces, no-reply appliances): 48/49, 39/39,
    // 35/35, 0, 0, 49/49 (biglobe-01 left: "user unknown" and a full-mailbox line in one
    // notice). The floors are those figures: a change that makes unseen mail worse fails.
    hold_floors(&total, (addr_ok, addr_total), [48, 39, 35, 49]);
}

/// Set B (`bounce_unseen_mail_b/`, see its README): 34 more whole messages from families in
/// neither the shared corpus, `bounce_unseen.rs` nor set A, written before any rule was
/// changed for issue 14's second round. Its as-written score is the honest generalisation
/// measure; the floors below are that score (raised only by general fixes).
#[test]
fn unseen_set_b_holds_its_scores() {
    let (total, addr_ok, addr_total) = score_set("bounce_unseen_mail_b");
    // As written (2026-12-06, before any rule change of this round): category 22/27, status
    // 21/23, reply 22/25, 1 false positive (a list digest), 2 false negatives, recipients
    // 24/27. After the general fixes: 27/27, 23/23, 25/25, 0, 0, 27/27 (the last one, a
    // Mailgun webhook relayed as text/plain, found by `Auto-Submitted: auto-generated` plus
    // a failure code: a fix made after seeing that miss, so set B is no longer held out).
    hold_floors(&total, (addr_ok, addr_total), [27, 23, 25, 27]);
}
