//! OAuth2 access tokens for smart hosts with `auth = "xoauth2"` (Microsoft 365 and Google
//! turned basic SMTP AUTH off): fetched from the host's `token_url` ([`rfc6749`]), cached
//! per smart host, fetched again before they expire, and dropped when the host refuses one.
//!
//! Input: a smart host's config; output: a [`Token`] for [`smtp`](super::smtp)'s AUTH
//! XOAUTH2, or a [`TokenError`] the relay turns into a deferral for that host.
//!
//! - Expiry by the project [`Clock`]: a token is used until 80% of its `expires_in`, or
//!   until 60 s before it expires when that is later (a one-hour token lives 59 minutes,
//!   a one-minute token 48 s). No `expires_in`: one hour is assumed; a refusal by the
//!   host still replaces it.
//! - Single flight: the cache is behind an async mutex held across the fetch, so
//!   concurrent deliveries wait for one request instead of each making their own (the
//!   one place a lock is held across an `.await`, on purpose).
//! - A refresh that fails while the cached token is still valid keeps using it (logged);
//!   without a valid token the error goes to the caller.
//! - A rotated refresh token (§6: the endpoint may issue a new one and void the old) is
//!   kept in memory and used from then on; a reload that leaves the host's OAuth2 keys
//!   alone keeps it (and the cached token), a restart starts again from the configured one.

pub mod rfc6749;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE};

use crate::clock::Clock;
use crate::config::{CaFile, HttpsTrust, RelayConfig, Secret, SmarthostAuth, SmarthostConfig};
use crate::http_client::Client;
use rfc6749::{AnswerError, Grant};

/// A token endpoint's answer is a small JSON document; more is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Lifetime assumed when the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME_MS: u64 = 3_600_000;

/// Why there is no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("OAuth2 token endpoint {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("OAuth2 token endpoint {url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("OAuth2 token endpoint {url}: {answer}")]
    Answer { url: String, answer: AnswerError },
}

/// An access token and when it stops being good.
pub struct AccessToken {
    pub value: Secret,
    /// Unix ms by the project clock.
    pub expires_at_ms: u64,
    refresh_at_ms: u64,
    /// Tells a refused token from a newer one fetched meanwhile.
    serial: u64,
}

/// A token for one AUTH, and whether it was fetched for it.
pub struct Token {
    pub access: Arc<AccessToken>,
    /// `Some`: fetched just now (HTTP status, whether a new refresh token came with it).
    pub fetched: Option<Fetched>,
}

#[derive(Clone, Copy, Debug)]
pub struct Fetched {
    pub status: u16,
    pub rotated_refresh_token: bool,
}

/// The keys of a smart host a token depends on: equal keys across a reload keep the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    url: hyper::Uri,
    client_id: String,
    client_secret: Secret,
    grant: Grant,
    scope: String,
    ca_file: Option<CaFile>,
    timeout: Duration,
}

impl Settings {
    /// `None` for a host without `auth = "xoauth2"` or with a config that failed validation.
    fn of(h: &SmarthostConfig, timeout: Duration) -> Option<Settings> {
        if h.auth != SmarthostAuth::Xoauth2 {
            return None;
        }
        let grant = if h.refresh_token.is_empty() {
            Grant::ClientCredentials
        } else {
            Grant::RefreshToken(h.refresh_token.clone())
        };
        Some(Settings {
            url: h.token_url.as_ref()?.get()?.0.clone(),
            client_id: h.client_id.clone(),
            client_secret: h.client_secret.clone(),
            grant,
            scope: h.scope.clone(),
            ca_file: h.token_ca_file.as_ref().and_then(|c| c.get()).cloned(),
            timeout,
        })
    }
}

/// The token cache of one smart host.
pub struct TokenSource {
    settings: Settings,
    client: Client,
    clock: Clock,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Arc<AccessToken>>,
    /// The refresh token the endpoint rotated to; used instead of the configured one.
    rotated: Option<Secret>,
    serial: u64,
}

impl TokenSource {
    fn new(name: &str, settings: Settings, clock: Clock) -> TokenSource {
        let trust = HttpsTrust {
            ca_file: settings.ca_file.as_ref(),
            insecure: false,
        };
        let client = crate::http_client::client(&format!("relay.smarthosts.{name}"), &trust);
        TokenSource {
            settings,
            client,
            clock,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The token endpoint, for messages.
    pub fn url(&self) -> String {
        self.settings.url.to_string()
    }

    /// Now by the clock expiries are reckoned with.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// `client_credentials` or `refresh_token`.
    pub fn grant(&self) -> &'static str {
        self.settings.grant.as_str()
    }

    /// A token to AUTH with: the cached one while it is good, else a fetched one.
    /// `refused`: the token the host just refused — dropped unless a newer one replaced it
    /// meanwhile (then that one is the answer: concurrent refusals cause one fetch).
    pub async fn token(&self, refused: Option<&AccessToken>) -> Result<Token, TokenError> {
        let mut st = self.state.lock().await;
        if let (Some(r), Some(cur)) = (refused, &st.current)
            && r.serial == cur.serial
        {
            st.current = None;
        }
        let now = self.clock.now_ms();
        if let Some(cur) = &st.current
            && now < cur.refresh_at_ms
        {
            return Ok(Token {
                access: cur.clone(),
                fetched: None,
            });
        }
        match self.fetch(&st).await {
            Ok((issued, status)) => Ok(self.keep(&mut st, issued, status, now)),
            Err(e) => match &st.current {
                Some(cur) if now < cur.expires_at_ms => {
                    tracing::warn!(error = %e, "OAuth2 token refresh failed; the cached token is still valid");
                    Ok(Token {
                        access: cur.clone(),
                        fetched: None,
                    })
                }
                _ => Err(e),
            },
        }
    }

    fn keep(&self, st: &mut State, issued: rfc6749::Issued, status: u16, now: u64) -> Token {
        let (expires_at_ms, refresh_at_ms) = deadlines(now, issued.expires_in);
        st.serial += 1;
        let access = Arc::new(AccessToken {
            value: issued.access_token,
            expires_at_ms,
            refresh_at_ms,
            serial: st.serial,
        });
        st.current = Some(access.clone());
        let rotated = issued.refresh_token.is_some();
        if let Some(r) = issued.refresh_token {
            st.rotated = Some(r);
        }
        tracing::info!(
            token_url = %self.settings.url,
            expires_in_s = (expires_at_ms - now) / 1000,
            rotated_refresh_token = rotated,
            "OAuth2 access token fetched"
        );
        Token {
            access,
            fetched: Some(Fetched {
                status,
                rotated_refresh_token: rotated,
            }),
        }
    }

    /// One token request within the deadline: the answer and its HTTP status.
    async fn fetch(&self, st: &State) -> Result<(rfc6749::Issued, u16), TokenError> {
        let s = &self.settings;
        let grant = match (&s.grant, &st.rotated) {
            (Grant::RefreshToken(_), Some(r)) => Grant::RefreshToken(r.clone()),
            (g, _) => g.clone(),
        };
        let body = rfc6749::form(&grant, &s.client_id, &s.client_secret, &s.scope);
        let req = Request::post(s.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(e.to_string()))?;
        let answer = tokio::time::timeout(s.timeout, self.send(req))
            .await
            .map_err(|_| TokenError::Timeout {
                url: self.url(),
                timeout: s.timeout,
            })??;
        let (status, bytes) = answer;
        rfc6749::parse(status, &bytes)
            .map(|issued| (issued, status))
            .map_err(|answer| TokenError::Answer {
                url: self.url(),
                answer,
            })
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), TokenError> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| self.unreachable(crate::error_chain::chain(&e)))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| self.unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, body))
    }

    fn unreachable(&self, reason: String) -> TokenError {
        TokenError::Unreachable {
            url: self.url(),
            reason,
        }
    }
}

/// (expires at, fetch again from) in unix ms for a token issued at `now` for `expires_in`
/// seconds: 80% of its lifetime, or its last minute when that comes later.
fn deadlines(now: u64, expires_in: Option<u64>) -> (u64, u64) {
    let lifetime = expires_in.map_or(DEFAULT_LIFETIME_MS, |s| s.saturating_mul(1000));
    let early = (lifetime / 5).min(60_000);
    (
        now.saturating_add(lifetime),
        now.saturating_add(lifetime - early),
    )
}

/// Every smart host's token cache, kept across reloads (built once per server).
#[derive(Clone)]
pub struct Registry {
    sources: Arc<Mutex<HashMap<String, Arc<TokenSource>>>>,
    clock: Clock,
}

/// The token caches of one config's smart hosts, by smart host name.
#[derive(Clone, Default)]
pub struct Tokens(Arc<HashMap<String, Arc<TokenSource>>>);

impl Tokens {
    pub fn get(&self, smarthost: &str) -> Option<&Arc<TokenSource>> {
        self.0.get(smarthost)
    }
}

impl Registry {
    pub fn new(clock: Clock) -> Registry {
        Registry {
            sources: Arc::default(),
            clock,
        }
    }

    /// The caches `relay`'s `xoauth2` smart hosts use: a host whose OAuth2 keys did not
    /// change keeps its cache (token and rotated refresh token), others start empty.
    pub fn tokens_for(&self, relay: &RelayConfig) -> Tokens {
        let timeout = relay.connect_timeout.get();
        let mut known = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tokens = HashMap::new();
        for h in &relay.smarthosts {
            let Some(settings) = Settings::of(h, timeout) else {
                continue;
            };
            let source = match known.get(&h.name) {
                Some(s) if s.settings == settings => s.clone(),
                _ => {
                    let s = Arc::new(TokenSource::new(&h.name, settings, self.clock.clone()));
                    known.insert(h.name.clone(), s.clone());
                    s
                }
            };
            tokens.insert(h.name.clone(), source);
        }
        Tokens(Arc::new(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fetched_again_at_80_percent_or_in_their_last_minute() {
        assert_eq!(deadlines(0, Some(3600)), (3_600_000, 3_540_000));
        assert_eq!(deadlines(0, Some(60)), (60_000, 48_000));
        assert_eq!(deadlines(1_000, Some(0)), (1_000, 1_000));
        assert_eq!(deadlines(0, None), (3_600_000, 3_540_000));
    }

    fn relay(client_secret: &str) -> RelayConfig {
        let toml = format!(
            "[[relay.smarthosts]]\nname = \"o365\"\nhost = \"127.0.0.1\"\nauth = \"xoauth2\"\nusername = \"u@t.test\"\ntoken_url = \"https://login.test/token\"\nclient_id = \"app\"\nclient_secret = \"{client_secret}\"\n[[relay.smarthosts]]\nname = \"plain\"\nhost = \"127.0.0.1\"\n"
        );
        crate::config::Config::from_toml(&toml, std::path::Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .relay
    }

    #[tokio::test]
    async fn a_reload_keeps_the_cache_of_a_host_whose_oauth2_keys_did_not_change() {
        let registry = Registry::new(Clock::system());
        let first = registry.tokens_for(&relay("s1"));
        assert!(
            first.get("plain").is_none(),
            "a password host has no token cache"
        );
        let same = registry.tokens_for(&relay("s1"));
        let changed = registry.tokens_for(&relay("s2"));
        let cache = |t: &Tokens| t.get("o365").cloned().expect("xoauth2 host");
        assert!(Arc::ptr_eq(&cache(&first), &cache(&same)));
        assert!(!Arc::ptr_eq(&cache(&first), &cache(&changed)));
    }
}
