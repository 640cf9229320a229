//! Text normalisation for the phrase tables: lower case, whitespace collapsed across the
//! line folds of long replies, the `550-5.7.1` prefixes of multi-line replies dropped.

use super::codes;

/// Drops the `550-5.7.1 ` prefixes of multi-line replies (RFC 5321 §4.2.1) so the phrases
/// read across the lines; the codes themselves are taken from the raw text.
fn strip_reply_prefix(line: &str) -> &str {
    let t = line.trim_start();
    let b = t.as_bytes();
    let is_code = b.len() >= 4
        && matches!(b[0], b'2' | b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b[3], b' ' | b'-');
    if !is_code {
        return line;
    }
    let rest = &t[4..];
    match codes::find_status(rest) {
        Some(s) if rest.starts_with(s) => rest[s.len()..].trim_start(),
        _ => rest,
    }
}

/// Lower-cases and collapses runs of whitespace to one space, so phrases match across the
/// line folds MTAs put into long replies. Bounded: texts longer than 16 KiB are cut.
fn normalize_lines(text: &str) -> String {
    const MAX: usize = 16 * 1024;
    let mut out = String::with_capacity(text.len().min(MAX));
    let mut space = false;
    for c in text
        .lines()
        .flat_map(|l| strip_reply_prefix(l).chars().chain(std::iter::once('\n')))
    {
        if out.len() >= MAX {
            break;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Lower-cases and collapses whitespace (see `normalize_lines`), then drops the repeats of
/// the reply's `550 5.7.1` prefix that re-wrapping MTAs (Postfix) leave mid-line.
pub(crate) fn normalize(text: &str) -> String {
    let out = normalize_lines(text);
    let (Some(code), Some(status)) = (codes::find_reply_code(text), codes::find_status(text))
    else {
        return out;
    };
    let spaced = format!("{code} {status} ");
    let dashed = format!("{code}-{status} ");
    if out.contains(&spaced) || out.contains(&dashed) {
        out.replace(&spaced, "").replace(&dashed, "")
    } else {
        out
    }
}
