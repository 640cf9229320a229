//! Non-standard bounce formats: notices without (or with useless) `message/delivery-status`.
//!
//! Input: the `Document`'s notice text. Output: `TextRecipient`s, each an address and the
//! part of the notice that speaks about it. The generic scan covers the "address, then its
//! reason" layout most MTAs share (Postfix, Exim, qmail, Sendmail transcripts, Yahoo,
//! appliances); the family modules handle layouts where that is not enough.

mod address;
mod exchange;
mod exim;
mod qmail;
mod sendmail;
pub(crate) mod ses;

use super::document::Document;

/// A failed recipient found in notice text.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextRecipient {
    pub address: String,
    /// The lines about this recipient (its block of the notice).
    pub diagnostic: String,
}

/// At most this many recipients per notice.
const MAX_RECIPIENTS: usize = 200;
/// A recipient's block is cut after this many bytes: real ones are a few lines, and blocks
/// of addresses sharing one long line would otherwise each run to the end of the notice.
const MAX_BLOCK: usize = 16 * 1024;

/// Recipients and their blocks, from the notice text.
pub(crate) fn scan(doc: &Document) -> Vec<TextRecipient> {
    let notice = exchange::normalize(&doc.notice);
    let notice = notice.as_ref();
    let excluded = excluded_addresses(doc);
    let own_domain = doc.from.rsplit_once('@').map_or("", |(_, d)| d);
    let mut found: Vec<address::Found> = Vec::new();
    for f in address::find_all(notice, MAX_RECIPIENTS * 4) {
        let sender_context = is_sender_context(notice, f.at);
        let own_role =
            is_role(&f.address) && f.address.ends_with(own_domain) && !own_domain.is_empty();
        if excluded.contains(&f.address) || sender_context || is_daemon(&f.address) || own_role {
            continue;
        }
        if !found.iter().any(|x| x.address == f.address) {
            found.push(f);
        }
        if found.len() >= MAX_RECIPIENTS {
            break;
        }
    }
    let failed = failed_recipients_header(doc);
    if found.iter().any(|f| failed.contains(&f.address)) {
        found.retain(|f| failed.contains(&f.address));
    }
    let starts = line_starts(notice, found.iter().map(|f| f.at));
    let mut out: Vec<TextRecipient> = Vec::with_capacity(found.len());
    for (i, f) in found.iter().enumerate() {
        let start = starts[i];
        let end = starts[i + 1..]
            .iter()
            .copied()
            .find(|&e| e > start)
            .unwrap_or(notice.len())
            .min(start + MAX_BLOCK);
        let block = text_between(notice, start, end);
        out.push(TextRecipient {
            address: f.address.clone(),
            diagnostic: refine(block, &f.address),
        });
    }
    if out.is_empty() {
        for a in failed {
            out.push(TextRecipient {
                address: a,
                diagnostic: String::new(),
            });
        }
    }
    out
}

/// Narrows a block to its most telling part with the family rules.
fn refine(block: &str, address: &str) -> String {
    if let Some(d) = sendmail::transcript_reply(block, address) {
        return d;
    }
    let block = exim::strip(block);
    qmail::strip(&block)
}

/// The start of the line holding each offset of `ats` (ascending), in one pass over `text`:
/// a notice naming hundreds of addresses on one long line must not be re-scanned per address.
fn line_starts(text: &str, ats: impl Iterator<Item = usize>) -> Vec<usize> {
    let (mut scanned, mut start) = (0, 0);
    ats.map(|at| {
        if let Some(nl) = text
            .as_bytes()
            .get(scanned..at)
            .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
        {
            start = scanned + nl + 1;
        }
        scanned = scanned.max(at);
        start
    })
    .collect()
}

/// `text[start..end]`, `end` moved back to a char boundary.
fn text_between(text: &str, start: usize, mut end: usize) -> &str {
    end = end.min(text.len());
    while end > start && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(start..end).unwrap_or("")
}

/// The original sender (the bounce's To, the original From) and the report's own From.
fn excluded_addresses(doc: &Document) -> Vec<String> {
    let mut v: Vec<String> = doc.to.clone();
    v.push(doc.from.clone());
    if let Some(f) = &doc.original.from {
        v.push(f.clone());
    }
    if let Some(rp) = doc.header("x-postfix-sender") {
        v.extend(address::find_all(rp, 2).into_iter().map(|f| f.address));
    }
    v.retain(|a| !a.is_empty());
    v
}

/// `MAIL FROM:<x>`, `envelope-from <x>`, `from <x>`: the address is the sender's.
fn is_sender_context(text: &str, at: usize) -> bool {
    let from = at.saturating_sub(24);
    let before = text.get(from..at).or_else(|| text.get(..at)).unwrap_or("");
    let before = before.to_ascii_lowercase();
    [
        "mail from:",
        "mail from: ",
        "envelope-from",
        "sender:",
        "from:<",
        "from: <",
        "smtp.mailfrom=",
        // ESP event payloads (JSON) mailed on: `"From": "news@…"` is the sender.
        "\"from\":",
    ]
    .iter()
    .any(|p| {
        before
            .trim_end_matches(['<', ' ', '"'])
            .ends_with(p.trim_end_matches(['<', ' ']))
    })
}

fn is_daemon(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    matches!(local, "mailer-daemon" | "mail-daemon" | "maildaemon")
}

/// The reporting system's own contact addresses ("please contact <postmaster@...>").
fn is_role(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    matches!(
        local,
        "postmaster" | "mailer-daemon" | "abuse" | "hostmaster" | "root"
    )
}

/// RFC-less but common: Exim's `X-Failed-Recipients`, some others' `X-Failed-Recipient`.
fn failed_recipients_header(doc: &Document) -> Vec<String> {
    doc.headers_named("x-failed-recipients")
        .chain(doc.headers_named("x-failed-recipient"))
        .flat_map(|v| address::find_all(v, MAX_RECIPIENTS))
        .map(|f| f.address)
        .collect()
}
