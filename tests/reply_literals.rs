//! STYLE §3: all reply text lives in `src/reply.rs`. No other source file may hold
//! a `"5xx x.y.z"` style SMTP reply literal (the bounce classifier's code tables, which
//! describe *other* servers' replies, are the one exception).

use std::path::Path;

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("read src")
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `"` then a 3-digit reply code, a space and an enhanced status code `d.d+.d+`.
fn has_reply_literal(line: &str) -> bool {
    let b = line.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'"'
            && b.len() > i + 9
            && (b'2'..=b'5').contains(&b[i + 1])
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
            && b[i + 4] == b' '
            && (b'2'..=b'5').contains(&b[i + 5])
            && b[i + 6] == b'.'
            && b[i + 7].is_ascii_digit()
    })
}

#[test]
fn no_reply_literals_outside_the_catalogue() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut offenders = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "reply.rs" || rel.starts_with("bounce/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        // Unit tests may assert on replies they receive.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if has_reply_literal(line) {
                offenders.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "reply literals outside reply.rs:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_detector_finds_a_literal() {
    assert!(has_reply_literal(r#"let r = "550 5.7.1 Relaying denied";"#));
    assert!(!has_reply_literal(r#"let r = "5.7.1";"#));
}
