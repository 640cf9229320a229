//! Headless Chromium (Debian package `chromium`, installed by `.ci/deps` with
//! `MXGATE_DEPS_EXTRA=1`, which `.ci/run` sets) for the page tests: the dashboard and the
//! queue console.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Chromium binary, or `None` (with a SKIPPED line) when none is installed.
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from(name))
        });
    if found.is_none() {
        eprintln!(
            "SKIPPED: no chromium installed (apt-get install chromium, or MXGATE_DEPS_EXTRA=1 .ci/deps); browser test not run"
        );
    }
    found
}

/// Runs headless Chromium on `url` in a 1280×`height` window with `args` (`--dump-dom`,
/// `--screenshot=`); returns stdout.
pub async fn browse(bin: &Path, profile: &Path, url: &str, height: u32, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--window-size=1280,{height}"))
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finished within 2 minutes")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
