//! Reading metrics in tests: one parser of the Prometheus text format, so every test asks
//! for a series the same way — by its name constant from `mxgate::metrics` and the labels
//! it cares about — instead of matching scrape lines by hand. `TestServer::metric` reads
//! the live `/metrics` page with it; tests without a `TestServer` include this file alone
//! (`#[path = "common/metrics.rs"]`) and read `Metrics::render()`.

/// The samples of `name` (exactly that name: `_bucket`/`_sum`/`_count` series are other
/// names) whose labels include every `(label, value)` of `labels`, summed; `None` when no
/// sample matches — so `is_some()` is "the series exists". Given a series' whole label
/// set, this is that one series' value.
pub fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = parse(line) else {
            continue;
        };
        let has = |(k, v): &(&str, &str)| series.1.iter().any(|(sk, sv)| sk == k && sv == v);
        if series.0 != name || !labels.iter().all(has) {
            continue;
        }
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// A series: its name and its labels, values unescaped.
type Series<'a> = (&'a str, Vec<(&'a str, String)>);

/// `name{a="x",b="y"} 1.5` → ((name, [(a, x), (b, y)]), 1.5).
fn parse(line: &str) -> Option<(Series<'_>, f64)> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    let mut labels = Vec::new();
    let mut rest = &line[end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut s = inner;
        loop {
            s = s.trim_start_matches(',');
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = s.split_once("=\"")?;
            let (value, after) = unquote(after)?;
            labels.push((key, value));
            s = after;
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(((name, labels), value))
}

/// A label value up to its closing quote (escapes `\"`, `\\`, `\n` undone), and the rest.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}
