//! What an operator installs: `mxgate --version`, the systemd unit (checked by systemd's own
//! `systemd-analyze` where it is installed, and against the binary's command line), and
//! `conf/production.toml` run by the real binary with only its ports and paths moved into a
//! temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::SmtpClient;
use common::process::spawn_server;

const UNIT: &str = "conf/systemd/mxgate.service";
const INSTALLED_BIN: &str = "/usr/local/bin/mxgate";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The commit build.rs should have found: only when this crate is its repository's top.
fn expected_commit() -> Option<String> {
    if let Some(c) = option_env!("MXGATE_GIT_COMMIT").filter(|c| !c.is_empty()) {
        return Some(c.to_owned());
    }
    let dir = root();
    let dir = dir.to_str()?;
    let top = git(&["-C", dir, "rev-parse", "--show-toplevel"])?;
    (Path::new(&top).canonicalize().ok()? == root().canonicalize().ok()?)
        .then(|| git(&["-C", dir, "rev-parse", "--short=12", "HEAD"]))
        .flatten()
}

#[test]
fn version_is_the_crate_version_and_the_git_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .arg("--version")
        .output()
        .expect("run mxgate --version");
    assert!(out.status.success());
    let version = env!("CARGO_PKG_VERSION");
    let expected = match expected_commit() {
        Some(commit) => format!("mxgate {version} ({commit})\n"),
        None => format!("mxgate {version}\n"),
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

/// Every value of `Key=` in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

fn value(unit: &str, key: &str) -> String {
    match values(unit, key).as_slice() {
        [one] => one.clone(),
        other => panic!("{UNIT}: expected one {key}=, found {other:?}"),
    }
}

#[test]
fn unit_runs_as_its_own_user_binds_low_ports_and_writes_only_the_data_dir() {
    let unit = read(UNIT);
    for (key, want) in [
        ("User", "mxgate"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(value(&unit, key), want, "{UNIT}: {key}=");
    }
    assert_eq!(values(&unit, "SystemCallFilter")[0], "@system-service");
    // The unit and the production example agree on where data and certificates live.
    let production = read("conf/production.toml");
    let data_dir = value(&unit, "ReadWritePaths");
    assert!(production.contains(&format!("data_dir = \"{data_dir}\"")));
    assert_eq!(
        format!("/var/lib/{}", value(&unit, "StateDirectory")),
        data_dir
    );
    assert!(production.contains("cert = \"/etc/mxgate/certs/"));
}

/// The unit's ExecStartPre/ExecStart command lines, run by this build of the binary on
/// conf/production.toml: the flags exist and the example passes `check-config`.
#[test]
fn unit_command_lines_work_with_this_binary_and_the_production_example() {
    let unit = read(UNIT);
    let production = root().join("conf/production.toml");
    for (key, probe) in [("ExecStartPre", None), ("ExecStart", Some("--help"))] {
        let line = value(&unit, key);
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(INSTALLED_BIN), "{key}={line}");
        let args: Vec<String> = words
            .map(|w| match w {
                "/etc/mxgate/mxgate.toml" => production.display().to_string(),
                w => w.to_owned(),
            })
            .chain(probe.map(str::to_owned))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_mxgate"))
            .args(&args)
            .output()
            .expect("run mxgate");
        assert!(
            out.status.success(),
            "{key}: mxgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (apt-get install systemd); unit not verified"
        );
    }
    found.then_some("systemd-analyze")
}

/// systemd's own checks: `verify` (unknown keys, bad values, missing executables) and the
/// offline `security` review, whose exposure score must stay in the "OK" band it has now.
#[test]
fn systemd_analyze_verifies_the_unit_and_rates_its_exposure_ok() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("mxgate.service");
    let text = read(UNIT).replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_mxgate"));
    std::fs::write(&unit, text).expect("write unit");
    let out = Command::new(tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run verify");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify: {err}");
    assert!(!err.contains("mxgate.service"), "verify warns: {err}");
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mxgate.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(score <= 2.0, "exposure {score} (was 1.4):\n{text}");
}

/// conf/production.toml with its binds on ephemeral loopback ports and its paths in a temp
/// dir: every other line as shipped. The listeners come up, the alias domain takes mail,
/// other domains are refused, submission offers AUTH only after STARTTLS, SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_example_serves_mx_and_submission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dns = common::dns::DnsServer::start().await;
    let d = dir.path().display().to_string();
    let mut toml = read("conf/production.toml");
    for (from, to) in [
        ("0.0.0.0:25", "127.0.0.1:0"),
        ("0.0.0.0:587", "127.0.0.1:0"),
        ("0.0.0.0:465", "127.0.0.1:0"),
        ("127.0.0.1:8025", "127.0.0.1:0"),
        ("\"/var/lib/mxgate\"", &format!("\"{d}/data\"")),
        ("\"/etc/mxgate/certs/", &format!("\"{d}/certs/")),
    ] {
        assert!(toml.contains(from), "production.toml no longer has {from}");
        toml = toml.replace(from, to);
    }
    toml.push_str(&dns.config_toml());
    let config = dir.path().join("mxgate.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut proc = spawn_server(&config);

    let mut mx = SmtpClient::connect(proc.inbound).await;
    mx.read_reply().await.expect_code(220);
    assert!(mx.cmd("EHLO client.test").await.has_line("STARTTLS"));
    mx.cmd("MAIL FROM:<alice@client.test>")
        .await
        .expect_code(250);
    mx.cmd("RCPT TO:<sales@example.com>").await.expect_code(250);
    mx.cmd("RCPT TO:<someone@elsewhere.test>")
        .await
        .expect(550, "5.7.1");
    mx.cmd("QUIT").await.expect_code(221);

    let mut sub = SmtpClient::connect(proc.submission).await;
    sub.read_reply().await.expect_code(220);
    assert!(!sub.cmd("EHLO erp.example.com").await.has_line("AUTH"));
    sub.cmd("STARTTLS").await.expect_code(220);
    let mut sub = sub.upgrade_tls().await;
    assert!(sub.cmd("EHLO erp.example.com").await.has_line("AUTH PLAIN"));
    sub.cmd("QUIT").await.expect_code(221);

    proc.sigterm();
    assert_eq!(proc.wait_exit(60), Some(0));
}
