//! Sets `MXGATE_VERSION` for `mxgate --version`: the crate version, plus the git commit when
//! the source is a git checkout and git is installed. A tarball or a machine without git builds
//! the same, just without the commit; packagers can pass `MXGATE_GIT_COMMIT` themselves.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MXGATE_GIT_COMMIT");
    let commit = std::env::var("MXGATE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit);
    let version = env!("CARGO_PKG_VERSION");
    let full = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version.to_owned(),
    };
    println!("cargo:rustc-env=MXGATE_VERSION={full}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The checked-out commit, only if this crate is the top of its own repository (not a
/// crate unpacked inside someone else's checkout). Rebuilds when HEAD moves.
fn git_commit() -> Option<String> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let top = git(&["-C", &manifest, "rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&manifest).canonicalize().ok()? {
        return None;
    }
    let mut watched = vec![git(&["-C", &manifest, "rev-parse", "--git-path", "HEAD"])?];
    watched.extend(git(&[
        "-C",
        &manifest,
        "rev-parse",
        "--git-path",
        "packed-refs",
    ]));
    if let Some(branch) = git(&["-C", &manifest, "symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["-C", &manifest, "rev-parse", "--git-path", &branch]));
    }
    for path in watched {
        // Relative git paths are relative to the manifest dir; a missing file would make
        // cargo rerun this script on every build, so only existing ones are watched.
        let path = Path::new(&manifest).join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    git(&["-C", &manifest, "rev-parse", "--short=12", "HEAD"])
}
