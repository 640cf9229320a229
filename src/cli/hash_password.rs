//! `mxgate hash-password`: read a password, print its argon2id PHC hash for
//! `[[submission.users]] password_hash`. Reads one line from stdin when it is not a terminal
//! (scripts), otherwise prompts without echo.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use argon2::password_hash::{PasswordHasher, SaltString};

pub fn run() -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        anyhow::bail!("empty password refused");
    }
    println!("{}", hash(&password)?);
    Ok(ExitCode::SUCCESS)
}

/// argon2id with the crate's default (OWASP) parameters and a random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}
