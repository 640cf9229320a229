//! A tiny HTTP client for the running server's admin API, used by `queue` (and later
//! `suppress`): the address and bearer token come from the config (`[admin]`), or
//! `--admin URL` / `MXGATE_ADMIN_TOKEN`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ConfigArg;

#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Admin base URL (default: from the config's `[admin] bind`).
    #[arg(long)]
    pub admin: Option<String>,
}

pub struct AdminClient {
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> anyhow::Result<AdminClient> {
        let (bind, config_token) = admin_section(&args.config)?;
        let base = match &args.admin {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let mut addr = bind;
                // A wildcard bind is reached on loopback.
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr.ip() {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    });
                }
                format!("http://{addr}")
            }
        };
        let token = std::env::var("MXGATE_ADMIN_TOKEN").unwrap_or(config_token);
        Ok(AdminClient { base, token })
    }

    /// Sends the request; returns the JSON body of a 2xx answer, or the API's error message.
    pub fn call(&self, method: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, json) = self.send(method, path, None)?;
        ok_or_error(method, path, status, json)
    }

    /// Sends the request; returns the status and JSON body whatever the status (for answers
    /// whose refusals carry details, like `POST /api/reload`).
    pub fn call_any(&self, method: &str, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        self.send(method, path, None)
    }

    /// As [`call`](Self::call), with a JSON request body.
    pub fn call_json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, json) = self.send(method, path, Some(body.to_string()))?;
        ok_or_error(method, path, status, json)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}{path}", self.base);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, body) = rt.block_on(async {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut req = Request::builder().method(method).uri(&url);
            if !self.token.is_empty() {
                req = req.header("authorization", format!("Bearer {}", self.token));
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
                .context("building the request")?;
            let fut = client.request(req);
            let resp = tokio::time::timeout(std::time::Duration::from_secs(30), fut)
                .await
                .with_context(|| format!("{url}: no answer within 30s"))?
                .with_context(|| {
                    format!("cannot reach the admin API at {url} (is `mxgate serve` running?)")
                })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .context("reading the answer")?
                .to_bytes();
            anyhow::Ok((status, body))
        })?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).trim().to_string())
        });
        Ok((status, json))
    }
}

/// `[admin] bind` and `token` of the config. A config that does not load because of a
/// mistake elsewhere still gives its `[admin]` table: `mxgate reload` must reach the server
/// to hear the server's verdict on that very file (and every other command still works).
fn admin_section(arg: &ConfigArg) -> anyhow::Result<(SocketAddr, String)> {
    let err = match arg.load() {
        Ok(config) => return Ok((config.admin.bind, config.admin.token.expose().to_string())),
        Err(e) => e,
    };
    let lenient = std::fs::read_to_string(&err.file)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .map(|table| {
            let admin = table.get("admin").and_then(|a| a.as_table());
            let get = |k: &str| admin.and_then(|a| a.get(k)).and_then(|v| v.as_str());
            let defaults = crate::config::AdminConfig::default();
            let bind = get("bind").and_then(|b| b.parse().ok());
            (
                bind.unwrap_or(defaults.bind),
                get("token").unwrap_or_default().to_string(),
            )
        });
    lenient.ok_or_else(|| err.into())
}

/// The body of a 2xx answer, else the API's error message as the error.
fn ok_or_error(
    method: &str,
    path: &str,
    status: u16,
    json: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    if !(200..300).contains(&status) {
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        bail!("{method} {path}: HTTP {status}: {msg}");
    }
    Ok(json)
}
