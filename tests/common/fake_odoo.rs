//! The Odoo stand-in: `tests/py/fake_odoo.py` runs Python's own `xmlrpc.server` with
//! Odoo's two endpoints, so mxgate's calls are parsed as Odoo parses them, and logs every
//! call it receives for the test to read. A child process of the test; killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::test_ca::TestCa;

/// How the stand-in behaves.
#[derive(Default)]
pub struct Options<'a> {
    /// The first `faults` execute_kw calls answer an XML-RPC fault.
    pub faults: u32,
    /// Serve HTTPS with a certificate this CA signed.
    pub tls: Option<&'a TestCa>,
    /// Check `X-Mxgate-Signature` with this secret (each logged call has `signature_ok`).
    pub secret: Option<&'a str>,
    /// `mail.alias` `search_read` answers these alias names.
    pub aliases: &'a [&'a str],
}

pub struct FakeOdoo {
    child: Child,
    pub port: u16,
    log: PathBuf,
    https: bool,
}

impl FakeOdoo {
    pub fn start(dir: &Path, opts: Options<'_>) -> FakeOdoo {
        let log = dir.join("odoo-calls.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fake_odoo.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&log).arg(opts.faults.to_string());
        if let Some(ca) = opts.tls {
            let (cert, key) = ca.server_pem_files(dir);
            cmd.arg(cert).arg(key);
        }
        if let Some(secret) = opts.secret {
            cmd.env("SIGNING_SECRET", secret);
        }
        cmd.env("ODOO_ALIASES", opts.aliases.join(","));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/py/fake_odoo.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("fake odoo prints its port");
        FakeOdoo {
            child,
            port,
            log,
            https: opts.tls.is_some(),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Every call so far: `{"service", "method", "args"[, "signature_ok"]}`.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    /// The raw messages `message_process` received.
    pub fn processed(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c["args"][4] == "message_process")
            .map(|c| c["args"][5][1]["binary"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for FakeOdoo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
