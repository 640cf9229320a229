//! `maildir` routes: the Maildir delivery protocol (cr.yp.to/proto/maildir.html) — write
//! `tmp/<unique>`, fsync it, rename it into `new/`, fsync `new/`. A reader never sees a
//! partial file, and once this returns the file survives a crash. Blocking: call from
//! `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Delivers `body` into the Maildir at `dir` (created with `tmp/`, `new/`, `cur/` if
/// missing). `hostname` goes into the unique name. Returns the path in `new/`.
pub fn deliver(dir: &Path, hostname: &str, body: &[u8]) -> io::Result<PathBuf> {
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let name = unique_name(hostname, body.len());
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let written = write_synced(&tmp, body).and_then(|()| fs::rename(&tmp, &new));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is only durable once the directory entry is.
    File::open(dir.join("new"))?.sync_all()?;
    Ok(new)
}

fn write_synced(path: &Path, body: &[u8]) -> io::Result<()> {
    // create_new: a name collision is an error, never an overwrite of someone's mail.
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

/// `<secs>.M<usec>P<pid>R<random>.<host>,S=<size>`: the modern unique-name form; the random
/// part makes two deliveries in the same microsecond by the same process distinct.
fn unique_name(hostname: &str, size: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{}R{:016x}.{host},S={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        rand::random::<u64>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lands_in_new_with_exact_bytes_and_tmp_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let md = dir.path().join("box");
        let body = b"Subject: x\r\n\r\nhello\r\n";
        let path = deliver(&md, "mx.example.test", body).expect("deliver");
        assert!(path.starts_with(md.join("new")));
        assert_eq!(fs::read(&path).expect("read"), body);
        assert_eq!(fs::read_dir(md.join("tmp")).expect("tmp").count(), 0);
        assert!(md.join("cur").is_dir());
    }

    #[test]
    fn names_are_unique_and_safe() {
        let a = unique_name("mx/a:b", 5);
        let b = unique_name("mx/a:b", 5);
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.contains(':'), "{a}");
        assert!(a.ends_with(",S=5"));
    }
}
