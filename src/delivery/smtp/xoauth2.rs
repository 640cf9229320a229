//! AUTH XOAUTH2 (Google's mechanism, developers.google.com/gmail/imap/xoauth2-protocol,
//! which Microsoft 365 speaks too): the initial response is base64 of
//! `user=<mailbox>\x01auth=Bearer <token>\x01\x01`.
//!
//! Not mail-send's `authenticate`: on a refused token the server answers `334 <base64
//! JSON>` (`{"status":"401",...}`) and waits for an empty line before its `535`, where
//! mail-send would send the credentials again. Here the exchange is finished properly,
//! and a refused token (that 334, or a `535`) is dropped from the cache and the AUTH
//! tried once more, on the same session, with a freshly fetched one.

use std::sync::Arc;

use base64::Engine as _;
use mail_send::{Credentials, SmtpClient};
use smtp_proto::response::generate::BitToString;
use smtp_proto::{AUTH_XOAUTH2, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use super::error::{SmtpError, mail_err, reply_line};
use super::{Hop, HopAuth, Pool, Steps};
use crate::delivery::oauth2::{Token, TokenSource};

/// The token a session to an `xoauth2` hop logs in with, and where a fresh one comes from.
pub(super) struct Bearer {
    source: Arc<TokenSource>,
    token: Token,
}

impl Pool {
    /// The token for `hop` when it logs in with XOAUTH2 (fetched before connecting: without
    /// one there is nothing to say to the host).
    pub(super) async fn bearer(
        &self,
        hop: &Hop,
        steps: &mut Steps,
    ) -> Result<Option<Bearer>, SmtpError> {
        let Some(HopAuth::XOauth2 { smarthost, .. }) = &hop.credentials else {
            return Ok(None);
        };
        let token_err = |reason: String| SmtpError::Token {
            host: hop.host.clone(),
            reason,
        };
        let source =
            self.tokens.get(smarthost).cloned().ok_or_else(|| {
                token_err(format!("smart host {smarthost:?} has no token settings"))
            })?;
        let token = source.token(None).await;
        note_token(steps, &source, &token);
        let token = token.map_err(|e| token_err(e.to_string()))?;
        Ok(Some(Bearer { source, token }))
    }
}

/// `token: POST <url> (<grant> grant) → HTTP 200, expires in 3599 s`, never the token.
fn note_token(
    steps: &mut Steps,
    source: &TokenSource,
    token: &Result<Token, crate::delivery::oauth2::TokenError>,
) {
    let now_ms = source.now_ms();
    steps.note(|| match token {
        Ok(t) => {
            let left = t.access.expires_at_ms.saturating_sub(now_ms) / 1000;
            match t.fetched {
                Some(f) => format!(
                    "token: POST {} ({} grant) -> HTTP {}, expires in {left} s{}",
                    source.url(),
                    source.grant(),
                    f.status,
                    if f.rotated_refresh_token {
                        ", new refresh token kept in memory"
                    } else {
                        ""
                    }
                ),
                None => format!("token: cached, expires in {left} s"),
            }
        }
        Err(e) => format!("token: {} grant failed: {e}", source.grant()),
    });
}

/// AUTH XOAUTH2 as `user`; a refused token is replaced once (the new one stays in `bearer`).
pub(super) async fn login<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    user: &str,
    bearer: &mut Bearer,
    host: &str,
    steps: &mut Steps,
) -> Result<(), SmtpError> {
    let auth_err = |reason: String| SmtpError::Auth {
        host: host.to_string(),
        reason,
    };
    if ehlo.auth_mechanisms & AUTH_XOAUTH2 == 0 {
        let offered = mechanisms(ehlo.auth_mechanisms);
        steps.note(|| format!("AUTH XOAUTH2: not offered (AUTH {offered})"));
        return Err(auth_err(format!("XOAUTH2 is not offered (AUTH {offered})")));
    }
    let mut refused = None;
    for attempt in 0..2 {
        if attempt == 1 {
            let source = bearer.source.clone();
            let fresh = source.token(Some(&bearer.token.access)).await;
            note_token(steps, &source, &fresh);
            bearer.token = fresh.map_err(|e| SmtpError::Token {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
        }
        match exchange(client, user, bearer.token.access.value.expose(), host).await? {
            Answer::Accepted(line) => {
                steps.note(|| format!("AUTH XOAUTH2 as {user}: {line}"));
                return Ok(());
            }
            Answer::Refused(why) => {
                steps.note(|| format!("AUTH XOAUTH2 as {user}: refused: {why}"));
                // Only a refused token is worth a new one; a 4xx or an unknown command
                // is about the host.
                if !why.token_refused {
                    return Err(auth_err(why.to_string()));
                }
                refused = Some(why);
            }
        }
    }
    let why = refused.map_or_else(String::new, |w| w.to_string());
    Err(auth_err(format!(
        "XOAUTH2 token refused twice (a fresh one too): {why}"
    )))
}

enum Answer {
    Accepted(String),
    Refused(Refusal),
}

/// The host's final reply, and the JSON status of its 334 error challenge when it sent one.
struct Refusal {
    reply: String,
    status: Option<String>,
    token_refused: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reply)?;
        if let Some(s) = &self.status {
            write!(f, " (XOAUTH2 error status {s})")?;
        }
        Ok(())
    }
}

/// One AUTH XOAUTH2 command with its initial response, and the exchange it starts.
async fn exchange<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    user: &str,
    token: &str,
    host: &str,
) -> Result<Answer, SmtpError> {
    let initial = Credentials::new_xoauth2(user, token)
        .encode(AUTH_XOAUTH2, "")
        .map_err(|e| mail_err(host, e, false))?;
    let r = client
        .cmd(format!("AUTH XOAUTH2 {initial}\r\n").as_bytes())
        .await
        .map_err(|e| mail_err(host, e, false))?;
    match r.code {
        235 => Ok(Answer::Accepted(reply_line(&r))),
        334 => {
            // The error challenge: an empty response ends the exchange (the 535 follows).
            let status = challenge_status(&r);
            let last = client
                .cmd(b"\r\n")
                .await
                .map_err(|e| mail_err(host, e, false))?;
            Ok(Answer::Refused(Refusal {
                reply: reply_line(&last),
                status,
                token_refused: true,
            }))
        }
        code => Ok(Answer::Refused(Refusal {
            reply: reply_line(&r),
            status: None,
            token_refused: code == 535,
        })),
    }
}

/// `status` of the base64 JSON in a 334 error challenge (`"401"`: the token is invalid).
fn challenge_status(r: &Response<String>) -> Option<String> {
    let json = base64::engine::general_purpose::STANDARD
        .decode(r.message.trim())
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    match v.get("status")? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `PLAIN LOGIN XOAUTH2` from EHLO's AUTH bits.
pub(super) fn mechanisms(bits: u64) -> String {
    let names: Vec<&str> = (0..64)
        .map(|i| 1u64 << i)
        .filter(|b| bits & b != 0)
        .map(|b| b.to_mechanism())
        .filter(|m| !m.is_empty())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}
