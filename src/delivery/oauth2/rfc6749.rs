//! RFC 6749 token requests, sans I/O: the form a grant posts (§4.4.2 client credentials,
//! §6 refresh token, client authenticated in the body as §2.3.1 allows — what Microsoft
//! Entra and Google document) and the answer read back (§5.1 success, §5.2 error).

use serde::Deserialize;

use crate::config::Secret;

/// Which grant a smart host uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// §4.4: the application's own permission (`client_secret` required).
    ClientCredentials,
    /// §6: a mailbox's consent, as a long-lived refresh token.
    RefreshToken(Secret),
}

impl Grant {
    pub fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
        }
    }
}

/// The `application/x-www-form-urlencoded` body of a token request.
pub fn form(grant: &Grant, client_id: &str, client_secret: &Secret, scope: &str) -> String {
    let mut pairs = vec![("grant_type", grant.as_str())];
    if let Grant::RefreshToken(t) = grant {
        pairs.push(("refresh_token", t.expose()));
    }
    pairs.push(("client_id", client_id));
    if !client_secret.is_empty() {
        pairs.push(("client_secret", client_secret.expose()));
    }
    if !scope.is_empty() {
        pairs.push(("scope", scope));
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 6749 Appendix B: the WHATWG form encoding (space as `+`, unreserved bytes as is).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A §5.1 success.
#[derive(Debug, PartialEq, Eq)]
pub struct Issued {
    pub access_token: Secret,
    /// Seconds; `None` when the endpoint left it out (RECOMMENDED only).
    pub expires_in: Option<u64>,
    /// A rotated refresh token: the old one may be void from now on.
    pub refresh_token: Option<Secret>,
}

/// Why an answer is not a token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// §5.2: `error` and, when given, `error_description`.
    #[error("HTTP {status} {}", described(.error, .description))]
    Refused {
        status: u16,
        error: Option<String>,
        description: Option<String>,
    },
    #[error("HTTP {status}: {reason}")]
    Malformed { status: u16, reason: String },
}

fn described(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!("{e} ({d})"),
        (Some(e), None) => e.clone(),
        (None, _) => "without an OAuth2 error".into(),
    }
}

#[derive(Deserialize)]
struct Success {
    access_token: String,
    token_type: Option<String>,
    /// A number, though some endpoints send it as a string.
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct Failure {
    error: Option<String>,
    error_description: Option<String>,
}

/// The token in an answer with `status` and `body`, or why there is none.
pub fn parse(status: u16, body: &[u8]) -> Result<Issued, AnswerError> {
    if !(200..300).contains(&status) {
        let f: Option<Failure> = serde_json::from_slice(body).ok();
        let (error, description) = f.map_or((None, None), |f| (f.error, f.error_description));
        return Err(AnswerError::Refused {
            status,
            error,
            description,
        });
    }
    let malformed = |reason: String| AnswerError::Malformed { status, reason };
    let s: Success = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a token response: {e}")))?;
    if s.access_token.is_empty() {
        return Err(malformed("empty access_token".into()));
    }
    // §7.1: XOAUTH2 sends a bearer token; another type would be refused by the host.
    if let Some(t) = s.token_type.filter(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(malformed(format!("token_type {t:?} is not Bearer")));
    }
    let expires_in = match s.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(t)) => t.trim().parse().ok(),
        Some(_) => None,
    };
    Ok(Issued {
        access_token: Secret::new(s.access_token),
        expires_in,
        refresh_token: s.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_carry_the_grant_client_and_scope_encoded() {
        let f = form(
            &Grant::ClientCredentials,
            "app id",
            &Secret::new("s&=+/"),
            "https://outlook.office365.com/.default",
        );
        assert_eq!(
            f,
            "grant_type=client_credentials&client_id=app+id&client_secret=s%26%3D%2B%2F&scope=https%3A%2F%2Foutlook.office365.com%2F.default"
        );
        let f = form(
            &Grant::RefreshToken(Secret::new("1//r")),
            "app",
            &Secret::default(),
            "",
        );
        assert_eq!(
            f,
            "grant_type=refresh_token&refresh_token=1%2F%2Fr&client_id=app"
        );
    }

    #[test]
    fn a_success_gives_the_token_its_lifetime_and_a_rotated_refresh_token() {
        let t = parse(
            200,
            br#"{"access_token":"at","token_type":"Bearer","expires_in":3599,"refresh_token":"r2"}"#,
        )
        .expect("token");
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.expires_in, Some(3599));
        assert_eq!(t.refresh_token, Some(Secret::new("r2")));
        let t = parse(200, br#"{"access_token":"at","expires_in":"60"}"#).expect("token");
        assert_eq!((t.expires_in, t.refresh_token), (Some(60), None));
    }

    #[test]
    fn errors_keep_the_endpoints_words() {
        let e = parse(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret"}"#,
        )
        .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "HTTP 401 invalid_client (AADSTS7000215: Invalid client secret)"
        );
        let e = parse(502, b"<html>bad gateway</html>").expect_err("refused");
        assert_eq!(e.to_string(), "HTTP 502 without an OAuth2 error");
        for bad in [
            &b"{}"[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":"a","token_type":"mac"}"#,
        ] {
            assert!(matches!(
                parse(200, bad),
                Err(AnswerError::Malformed { .. })
            ));
        }
    }
}
