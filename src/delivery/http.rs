//! `http` routes: POST the raw message to the ERP (`Content-Type: message/rfc822`), routing
//! metadata in `X-Mxgate-*` headers, within the route's `timeout`. `Ok` is a 2xx; any
//! other answer is an [`Error::Status`] for [`classify`](super::outcome::classify).
//! `http://` or `https://` ([`crate::http_client`]): each route has its own client, as each
//! has its own `ca_file` and `tls_verify`.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};

use super::Error;
use crate::config::{Config, HttpRoute, HttpUrl, RouteConfig};

pub use crate::http_client::Client;

/// The clients of the `http` and `odoo` routes, by route name, built with the config they
/// come from (each keeps its pool of connections to the ERP between attempts).
pub struct Clients(HashMap<String, Client>);

impl Clients {
    pub fn new(config: &Config) -> Clients {
        let clients = config.routes.iter().filter_map(|(name, r)| {
            let trust = match r {
                RouteConfig::Http(h) => h.trust(),
                RouteConfig::Odoo(o) => o.trust(),
                _ => return None,
            };
            let client = crate::http_client::client(&format!("routes.{name}"), &trust);
            Some((name.clone(), client))
        });
        Clients(clients.collect())
    }

    /// The client of route `name`.
    pub fn route(&self, name: &str) -> Result<&Client, Error> {
        self.0
            .get(name)
            .ok_or_else(|| Error::UnknownRoute(name.to_owned()))
    }
}

/// How much of the ERP's answer is read (the rest is dropped with the connection).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an error answer goes into the recipient's `last_reply`.
const REPLY_EXCERPT: usize = 200;

/// What the ERP is told about the message, one header each.
#[derive(Clone, Debug)]
pub struct Metadata<'a> {
    /// `X-Mxgate-Route`: the route name.
    pub route: &'a str,
    /// `X-Mxgate-Alias`: the alias address that matched.
    pub alias: &'a str,
    /// `X-Mxgate-Thread`: the `reply+TOKEN` token; omitted when none.
    pub thread: Option<&'a str>,
    /// `X-Mxgate-Detail`: the `alias+detail` detail; omitted when none.
    pub detail: Option<&'a str>,
    /// `X-Mxgate-Envelope-From`: MAIL FROM; empty for the null sender.
    pub envelope_from: &'a str,
    /// `X-Mxgate-Envelope-To`: this recipient, as given in RCPT TO.
    pub envelope_to: &'a str,
    /// `X-Mxgate-Queue-Id`: lets the ERP de-duplicate an at-least-once re-delivery.
    pub queue_id: String,
}

/// POSTs `body` to the route; returns the reply line (`HTTP 200 OK`) on a 2xx.
pub async fn post(
    client: &Client,
    route: &HttpRoute,
    meta: &Metadata<'_>,
    body: Vec<u8>,
) -> Result<String, Error> {
    let req = request(route, meta, body)?;
    let timeout = route.timeout.get();
    tokio::time::timeout(timeout, send(client, req))
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

async fn send(client: &Client, req: Request<Full<Bytes>>) -> Result<String, Error> {
    let resp = client.request(req).await.map_err(Error::Http)?;
    let status = resp.status();
    let line = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let line = line.trim_end().to_string();
    // Read the answer so the connection can be reused; its text explains a refusal.
    let text = match Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(b) => excerpt(&b.to_bytes()),
        Err(_) => String::new(),
    };
    if status.is_success() {
        return Ok(line);
    }
    let reply = if text.is_empty() {
        line
    } else {
        format!("{line}: {text}")
    };
    Err(Error::Status {
        status: status.as_u16(),
        reply,
    })
}

fn request(
    route: &HttpRoute,
    meta: &Metadata<'_>,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, Error> {
    let bad = |reason: &str| Error::BadUrl {
        url: route.url.as_str().to_owned(),
        reason: reason.to_string(),
    };
    // Parsed at config load; `None` only in a config that failed validation.
    let Some(HttpUrl(uri)) = route.url.get() else {
        return Err(bad("not a valid URL"));
    };
    let auth = crate::auth::erp_header_of(&body);
    let signature =
        crate::http_client::signature(&route.signing_secret, crate::http_client::unix_now(), &body);
    let mut req = Request::post(uri.clone())
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| bad("cannot build a request for this URL"))?;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    let mut set = |name: &'static str, v: &str| {
        h.insert(HeaderName::from_static(name), header_value(v));
    };
    set("x-mxgate-alias", meta.alias);
    set("x-mxgate-route", meta.route);
    if let Some(t) = meta.thread {
        set("x-mxgate-thread", t);
    }
    if let Some(d) = meta.detail {
        set("x-mxgate-detail", d);
    }
    set("x-mxgate-envelope-from", meta.envelope_from);
    set("x-mxgate-envelope-to", meta.envelope_to);
    set("x-mxgate-queue-id", &meta.queue_id);
    if let Some(a) = auth {
        set("x-mxgate-auth", &a); // the inbound verdict, from the top of the message
    }
    if let Some(sig) = signature {
        h.insert(crate::http_client::SIGNATURE, sig);
    }
    if !route.token.is_empty() {
        h.insert(
            AUTHORIZATION,
            header_value(&format!("Bearer {}", route.token.expose())),
        );
    }
    Ok(req)
}

/// Addresses may be UTF-8 (SMTPUTF8): sent as raw bytes, which HTTP allows (obs-text).
/// Control characters cannot occur in parsed addresses; they are dropped defensively.
fn header_value(s: &str) -> HeaderValue {
    let clean: Vec<u8> = s.bytes().filter(|b| *b >= 0x20 && *b != 0x7f).collect();
    HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// First line-ish of an answer, printable, bounded: for `last_reply` and logs.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(REPLY_EXCERPT)
        .collect();
    one_line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn route(url: &str) -> HttpRoute {
        HttpRoute {
            url: crate::config::Parsed::new(url),
            timeout: crate::config::HumanDuration::secs(1),
            token: Secret::new("t0k"),
            ca_file: None,
            tls_verify: true,
            signing_secret: Secret::default(),
        }
    }

    fn meta() -> Metadata<'static> {
        Metadata {
            route: "crm",
            alias: "sales@example.test",
            thread: None,
            detail: Some("q3"),
            envelope_from: "",
            envelope_to: "sales+q3@example.test",
            queue_id: "00000000000000FF".into(),
        }
    }

    #[test]
    fn request_carries_metadata_and_omits_absent_thread() {
        let req =
            request(&route("http://127.0.0.1:1/in"), &meta(), b"x".to_vec()).expect("request");
        let h = req.headers();
        assert_eq!(h["content-type"], "message/rfc822");
        assert_eq!(h["x-mxgate-detail"], "q3");
        assert_eq!(h["x-mxgate-envelope-from"], "");
        assert_eq!(h["authorization"], "Bearer t0k");
        assert!(h.get("x-mxgate-thread").is_none());
    }

    #[test]
    fn garbage_urls_are_refused_with_a_reason() {
        for url in ["ftp://erp.test/", "not a url"] {
            let e = request(&route(url), &meta(), Vec::new()).expect_err(url);
            assert!(matches!(e, Error::BadUrl { .. }), "{url}: {e}");
        }
    }

    #[test]
    fn utf8_addresses_and_control_bytes_make_valid_headers() {
        assert_eq!(
            header_value("josé@example.test").as_bytes(),
            "josé@example.test".as_bytes()
        );
        assert_eq!(header_value("a\r\nb"), "ab");
    }

    #[test]
    fn excerpt_is_one_bounded_line() {
        let long = "no such alias\r\n".repeat(100);
        let e = excerpt(long.as_bytes());
        assert!(e.starts_with("no such alias no such"));
        assert!(e.chars().count() <= REPLY_EXCERPT && !e.contains('\n'));
    }
}
