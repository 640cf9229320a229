//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, for the submission listeners only.
//!
//! Rules (SPEC "Submission"): never on the inbound listener; only after TLS (`530 5.7.0`);
//! wrong credentials `535 5.7.8`; passwords checked against the argon2 hashes of
//! `submission.users`, in `spawn_blocking` (argon2 is deliberately slow). Failures are
//! counted per client IP ([`Shared`](super::listener::Shared)); past
//! `smtp.max_auth_failures` the client gets `421` and is disconnected.
//!
//! An unknown user name costs the same argon2 work as a known one, so response time does
//! not reveal which names exist.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tracing::info;

use super::{Session, State};
use crate::envelope::ListenerKind;
use crate::reply::{self, Reply};

/// An AUTH exchange waiting for the client's next line.
#[derive(Debug)]
pub(super) enum Exchange {
    /// `AUTH PLAIN` without initial response: the response comes next.
    Plain,
    LoginUsername,
    LoginPassword {
        username: String,
    },
}

pub(super) async fn auth(s: &mut Session, mechanism: &str, initial: Option<String>) -> Reply {
    if s.kind == ListenerKind::Inbound {
        return reply::AUTH_NOT_ON_LISTENER;
    }
    if !s.peer.tls {
        return reply::MUST_STARTTLS;
    }
    if s.peer.user.is_some() {
        return reply::AUTH_ALREADY;
    }
    match s.state {
        State::Connected => return reply::NEED_EHLO,
        // RFC 4954 §4: not during a mail transaction.
        State::Mail(_) => return reply::BAD_SEQUENCE,
        State::Greeted => {}
    }
    if s.shared
        .auth_blocked(s.peer.addr.ip(), s.ctx.config.smtp.max_auth_failures)
    {
        info!("AUTH refused: too many failures from this address");
        return reply::AUTH_TOO_MANY_FAILURES;
    }
    match (mechanism, initial) {
        ("PLAIN", None) => {
            s.sasl = Some(Exchange::Plain);
            reply::AUTH_CONTINUE
        }
        ("PLAIN", Some(response)) => plain(s, response.as_bytes()).await,
        ("LOGIN", None) => {
            s.sasl = Some(Exchange::LoginUsername);
            reply::AUTH_LOGIN_USERNAME
        }
        ("LOGIN", Some(username)) => login_username(s, username.as_bytes()),
        _ => reply::AUTH_MECHANISM,
    }
}

/// The client's line in an exchange (RFC 4954 §4: `*` cancels).
pub(super) async fn step(s: &mut Session, exchange: Exchange, line: &[u8]) -> Reply {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line == b"*" {
        return reply::AUTH_CANCELLED;
    }
    match exchange {
        Exchange::Plain => plain(s, line).await,
        Exchange::LoginUsername => login_username(s, line),
        Exchange::LoginPassword { username } => match decode(line) {
            Some(password) => verify(s, username, password).await,
            None => reply::PARAM_SYNTAX,
        },
    }
}

fn login_username(s: &mut Session, b64: &[u8]) -> Reply {
    match decode(b64) {
        Some(username) => {
            s.sasl = Some(Exchange::LoginPassword { username });
            reply::AUTH_LOGIN_PASSWORD
        }
        None => reply::PARAM_SYNTAX,
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`; an authzid other than authcid is refused.
async fn plain(s: &mut Session, b64: &[u8]) -> Reply {
    let Some(text) = decode(b64) else {
        return reply::PARAM_SYNTAX;
    };
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reply::PARAM_SYNTAX;
    };
    if !authzid.is_empty() && authzid != authcid {
        return failed(s, authcid);
    }
    let (username, password) = (authcid.to_string(), password.to_string());
    verify(s, username, password).await
}

/// Base64 → UTF-8 text; `=` is the empty response (RFC 4954 §4).
fn decode(b64: &[u8]) -> Option<String> {
    if b64 == b"=" {
        return Some(String::new());
    }
    String::from_utf8(STANDARD.decode(b64).ok()?).ok()
}

async fn verify(s: &mut Session, username: String, password: String) -> Reply {
    let hash = s
        .ctx
        .config
        .submission
        .users
        .iter()
        .find(|u| u.name == username)
        .map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || check(hash.as_deref(), &password))
        .await
        .unwrap_or(false);
    if ok {
        info!(user = %username, "authenticated");
        s.peer.user = Some(username);
        reply::AUTH_OK
    } else {
        failed(s, &username)
    }
}

fn check(hash: Option<&str>, password: &str) -> bool {
    let argon = Argon2::default();
    match hash.and_then(|h| PasswordHash::new(h).ok()) {
        Some(h) => argon.verify_password(password.as_bytes(), &h).is_ok(),
        None => {
            // Same work as a real check (see module doc); the result is irrelevant.
            if let Ok(salt) = SaltString::from_b64("bXhnYXRlZHVtbXlzYWx0") {
                let _ = argon.hash_password(password.as_bytes(), &salt);
            }
            false
        }
    }
}

fn failed(s: &mut Session, username: &str) -> Reply {
    let failures = s.shared.auth_failed(s.peer.addr.ip());
    info!(user = ?username, failures, "authentication failed");
    reply::AUTH_INVALID
}
