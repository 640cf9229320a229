//! The category code table of the shared corpus README (copied to
//! `tests/fixtures/bounce_category_codes.md`) as a fixture: every row entry (reply code,
//! enhanced status, the table's note as the diagnostic text) is classified by
//! `bounce::classify_reply` and must land in the category the table gives it.
//!
//! Entries the code alone cannot settle are not errors: where the same reply code and
//! status (and no note) stand in several categories, the table itself says the diagnostic
//! text decides, so the verdict must be one of those categories. The few entries where the
//! classifier deliberately disagrees are listed in `DISAGREE` with the reason; a listed
//! entry that starts to agree fails the test, so the list stays true.

use std::collections::BTreeMap;

use mxgate::bounce::{Category, classify_reply};

/// (category, reply code, status as written, why the classifier reads it otherwise).
const DISAGREE: &[(&str, &str, &str, &str)] = &[
    ("DMARC", "550", "no code", BARE_CODE),
    ("DMARC", "553", "-", BARE_CODE),
    ("Invalid address", "554", "5.2.2", FULL),
    ("Mailbox", "450", "4.2.2", FULL),
    ("Mailbox", "522", "5.2.2", FULL),
    ("Mailbox", "550", "4.2.2", FULL),
    ("Invalid address", "525", "5.7.13", DISABLED),
    ("Invalid address", "550", "5.7.13", DISABLED),
    ("Rejection", "550", "5.7.13", DISABLED),
    (
        "Invalid address",
        "550",
        "5.2.1",
        "the note \"inactive account\" is the product's own definition of Mailbox",
    ),
    (
        "Rejection",
        "550",
        "5.4.6",
        "the note \"loop\" is one word, no reply: \"mail loop\", \"routing loop\" are read",
    ),
    (
        "Rejection",
        "554",
        "NA",
        "names the sender domain and a poor reputation: the reputation phrase decides (Blocked)",
    ),
];

const BARE_CODE: &str = "a bare 550/553 is RFC 5321's generic refusal: only words can name DMARC";
const FULL: &str = "RFC 3463 X.2.2 is mailbox full whatever reply code carries it";
const DISABLED: &str = "X.7.13 is \"user account disabled\" (IANA registry): the product's Mailbox";

#[derive(Debug, Clone)]
struct Entry {
    category: String,
    reply: String,
    status: String,
    note: String,
}

/// Splits at commas outside parentheses and quotes.
fn split_items(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '"' => quoted = !quoted,
            ',' if depth == 0 && !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_owned()).collect()
}

fn entries() -> Vec<Entry> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bounce_category_codes.md"
    );
    let table = std::fs::read_to_string(path).expect("code table fixture");
    let mut out = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (category, codes) = (cells[1], cells[3]);
        if Category::from_name(category).is_none() {
            continue;
        }
        for group in codes.split(';') {
            let group = group.trim();
            let Some((reply, rest)) = group.split_once(' ') else {
                continue;
            };
            for item in split_items(rest) {
                let (status, note) = match item.split_once(" (") {
                    Some((s, n)) => (s.trim(), n.trim_end_matches(')')),
                    None if item.starts_with('(') => ("-", item.trim_matches(['(', ')'])),
                    None => (item.as_str(), ""),
                };
                out.push(Entry {
                    category: category.to_owned(),
                    reply: reply.to_owned(),
                    status: status.to_owned(),
                    note: note.trim_matches('"').to_owned(),
                });
            }
        }
    }
    out
}

fn classify(e: &Entry) -> Category {
    let status = e.status.as_str();
    let status = (status.starts_with(['2', '4', '5']) && status.contains('.')).then_some(status);
    classify_reply(e.reply.parse().ok(), status, &e.note).category
}

#[test]
fn every_row_of_the_category_code_table_classifies_as_the_table_says() {
    let entries = entries();
    assert!(entries.len() > 200, "the fixture table was read");
    // Where one code pair stands in several categories without a note, the text decides.
    let mut homes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.note.is_empty()) {
        homes
            .entry((e.reply.clone(), e.status.clone()))
            .or_default()
            .push(e.category.clone());
    }
    let (mut agree, mut ambiguous, mut wrong) = (0, 0, Vec::new());
    for e in &entries {
        let got = classify(e);
        let key = (e.reply.clone(), e.status.clone());
        let listed = DISAGREE
            .iter()
            .find(|d| d.0 == e.category && d.1 == e.reply && d.2 == e.status);
        let shared = homes.get(&key).filter(|c| c.len() > 1 && e.note.is_empty());
        if got.as_str() == e.category {
            agree += 1;
            assert!(listed.is_none(), "{e:?} agrees now: drop it from DISAGREE");
        } else if let Some(cats) = shared {
            if cats.iter().any(|c| c == got.as_str()) {
                ambiguous += 1;
            } else if listed.is_none() {
                wrong.push(format!("{e:?} read as {got}, not one of {cats:?}"));
            }
        } else if listed.is_none() {
            wrong.push(format!("{e:?} read as {got}"));
        }
    }
    println!(
        "code table: {} entries, {agree} as the table says, {ambiguous} shared (text decides), {} listed",
        entries.len(),
        DISAGREE.len()
    );
    assert!(
        wrong.is_empty(),
        "entries read against the table:\n{}",
        wrong.join("\n")
    );
}
