//! Config loading: every shipped config validates; bad configs give every problem with
//! file:line through the real `mxgate check-config` binary, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use mxgate::config::Config;

fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = tomls(&root.join("conf"));
    files.extend(tomls(&root.join("tests/fixtures/config")));
    assert!(files.len() >= 2);
    for f in files {
        Config::load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn check_config(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["check-config", "--config"])
        .arg(file)
        .output()
        .expect("run mxgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/bad")
        .join(name)
}

#[test]
fn check_config_accepts_the_default() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/mxgate.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["check-config", "--config"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_key_is_reported_with_file_and_line() {
    let (code, err) = check_config(&bad("unknown_key.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("unknown_key.toml:3"), "{err}");
    assert!(err.contains("hostnmae"), "{err}");
}

#[test]
fn bad_value_is_reported_with_its_line() {
    let (code, err) = check_config(&bad("bad_value.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("bad_value.toml:2"), "{err}");
    assert!(err.contains("parsecs"), "{err}");
}

#[test]
fn syntax_error_and_unknown_route_kind_are_precise() {
    let (code, err) = check_config(&bad("syntax.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("syntax.toml:1"), "{err}");
    let (code, err) = check_config(&bad("route_kind.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("carrier-pigeon"), "{err}");
}

#[test]
fn every_semantic_problem_is_listed_at_once() {
    let (code, err) = check_config(&bad("many_problems.toml"));
    assert_eq!(code, 1);
    for expected in [
        "many_problems.toml:2: server.hostname",
        "many_problems.toml:7: listeners.submission.bind",
        "many_problems.toml:11: domains[0].catchall",
        "many_problems.toml:14: aliases[0].address",
        "many_problems.toml:19: routes.crm.url",
        "many_problems.toml:22: queue.retry_initial",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("6 problem(s)"), "{err}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, err) = check_config(Path::new("/nonexistent/mxgate.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config"), "{err}");
}

#[test]
fn mta_sts_and_tls_rpt_problems_are_reported_at_their_keys() {
    let (code, err) = check_config(&bad("outbound_tls.toml"));
    assert_eq!(code, 1);
    for expected in [
        "outbound_tls.toml:2: relay.mta_sts.policy_port",
        "outbound_tls.toml:3: relay.mta_sts.ca_file",
        "relay.tls_policy.postmaster@example.com",
        "outbound_tls.toml:9: relay.tls_rpt.check_interval",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let (code, err) = check_config(&bad("tls_policy_mode.toml"));
    assert_eq!(code, 1);
    assert!(
        err.contains("tls_policy_mode.toml:2") && err.contains("strict"),
        "{err}"
    );
}

/// `check-config` on `text` (written to a temp file): (exit code, stdout).
fn check_config_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mxgate.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run mxgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_warns_when_no_dkim_key_can_sign_tls_rpt_reports() {
    let minimal = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/minimal.toml"),
    )
    .expect("minimal config");
    let head = "[server]\nhostname = \"mx.example.test\"\n";
    let (code, out) = check_config_text(&format!("{head}{minimal}"));
    assert_eq!(code, 0, "a warning is no error: {out}");
    assert!(
        out.contains("relay.tls_rpt: warning: no [[dkim.keys]] entry for mx.example.test"),
        "{out}"
    );
    assert!(out.contains("mailto:"), "{out}");

    // A key of a parent domain signs for the hostname: no warning.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.key");
    mxgate::auth::keys::generate_to(&key, mxgate::config::DkimAlgorithm::Ed25519).expect("key");
    let dkim = format!(
        "[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"s1\"\n\
         algorithm = \"ed25519\"\nkey_file = \"{}\"\n",
        key.display()
    );
    let (code, out) = check_config_text(&format!("{head}{minimal}{dkim}"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");

    // Reports off: nothing to warn about.
    let off = "[relay.tls_rpt]\nenabled = false\n";
    let (code, out) = check_config_text(&format!("{head}{minimal}{off}"));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn a_smarthost_ca_file_that_cannot_be_read_is_a_problem_at_its_key() {
    let minimal = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/minimal.toml"),
    )
    .expect("minimal config");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "no certificate here\n").expect("write");
    for (ca_file, says) in [
        ("/nonexistent/corp-ca.pem".to_string(), "cannot read PEM"),
        (not_pem.display().to_string(), "no CERTIFICATE block"),
    ] {
        let path = dir.path().join("mxgate.toml");
        std::fs::write(
            &path,
            format!(
                "{minimal}[[relay.smarthosts]]\nname = \"corp\"\nhost = \"127.0.0.1\"\n\
                 security = \"starttls\"\nca_file = \"{ca_file}\"\n"
            ),
        )
        .expect("write");
        let (code, err) = check_config(&path);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("relay.smarthosts[0].ca_file"), "{err}");
        assert!(err.contains(&ca_file) && err.contains(says), "{err}");
    }
}
