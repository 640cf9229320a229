//! `odoo` routes: what Odoo's own mailgate script (`odoo-mailgate.py`) does, over XML-RPC:
//! `execute_kw(db, uid, password, 'mail.thread', 'message_process', [model, raw])` on
//! `<url>/xmlrpc/2/object`. The raw message goes as `<base64>` (`xmlrpc.client.Binary`,
//! which `message_process` unwraps), so any bytes survive; an empty `model` is sent as
//! `False` and Odoo routes by its alias table.
//!
//! With `user` instead of `uid`, the uid is looked up once with `authenticate(db, login,
//! password, {})` on `<url>/xmlrpc/2/common` and kept for the route.
//!
//! Retried like `http`: connection errors, timeouts, HTTP 5xx and XML-RPC faults (Odoo's
//! "no possible route", access errors: all fixable on the ERP side) are
//! [`Error::Fault`]/transport errors → `Deferred`; only an HTTP 4xx bounces.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Uri};

use super::Error;
use super::http::Client;
use crate::config::OdooRoute;

/// Largest XML-RPC answer read (Odoo answers a thread id or a fault with a traceback).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// How much of a fault string goes into `last_reply`.
const FAULT_EXCERPT: usize = 300;

/// uids found by `authenticate`, per route name (one login per route, not per message).
#[derive(Default)]
pub struct Logins {
    uids: Mutex<HashMap<String, u32>>,
    /// One `authenticate` at a time: concurrent first deliveries wait for its uid.
    login: tokio::sync::Mutex<()>,
}

impl Logins {
    fn get(&self, route: &str) -> Option<u32> {
        self.uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .copied()
    }

    fn put(&self, route: &str, uid: u32) {
        self.uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(route.to_string(), uid);
    }
}

/// Hands `raw` to Odoo's `message_process`; returns `XML-RPC message_process: <result>`.
pub async fn deliver(
    client: &Client,
    logins: &Logins,
    route_name: &str,
    route: &OdooRoute,
    raw: &[u8],
) -> Result<String, Error> {
    let timeout = route.timeout.get();
    let work = async {
        let uid = match (route.uid, logins.get(route_name)) {
            (Some(uid), _) | (None, Some(uid)) => uid,
            (None, None) => {
                let _one = logins.login.lock().await;
                match logins.get(route_name) {
                    Some(uid) => uid,
                    None => {
                        let uid = authenticate(client, route).await?;
                        logins.put(route_name, uid);
                        uid
                    }
                }
            }
        };
        let body = execute_kw_call(route, uid, raw);
        let answer = call(client, route, Service::Object, body).await?;
        Ok(format!("XML-RPC message_process: {}", answer.summary()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

pub(super) async fn authenticate(client: &Client, route: &OdooRoute) -> Result<u32, Error> {
    let body = method_call(
        "authenticate",
        &[
            Param::Str(&route.database),
            Param::Str(&route.user),
            Param::Str(route.password.expose()),
            Param::EmptyStruct,
        ],
    );
    match call(client, route, Service::Common, body).await? {
        Value::Int(uid) if uid > 0 => u32::try_from(uid).map_err(|_| bad_login(route)),
        _ => Err(bad_login(route)),
    }
}

fn bad_login(route: &OdooRoute) -> Error {
    Error::Fault(format!(
        "odoo authenticate: login {:?} refused for database {:?}",
        route.user, route.database
    ))
}

/// The `execute_kw` request body for one message.
pub fn execute_kw_call(route: &OdooRoute, uid: u32, raw: &[u8]) -> String {
    let model = if route.model.is_empty() {
        Param::False
    } else {
        Param::Str(&route.model)
    };
    method_call(
        "execute_kw",
        &[
            Param::Str(&route.database),
            Param::Int(i64::from(uid)),
            Param::Str(route.password.expose()),
            Param::Str("mail.thread"),
            Param::Str("message_process"),
            Param::Array(vec![model, Param::Base64(raw)]),
        ],
    )
}

/// The XML-RPC service a call goes to.
#[derive(Clone, Copy)]
pub(super) enum Service {
    /// `/xmlrpc/2/common` (`authenticate`).
    Common,
    /// `/xmlrpc/2/object` (`execute_kw`).
    Object,
}

/// POSTs an XML-RPC call to `<url>/xmlrpc/2/<service>` and decodes the answer.
async fn call(
    client: &Client,
    route: &OdooRoute,
    service: Service,
    body: String,
) -> Result<Value, Error> {
    parse_response(&call_xml(client, route, service, body).await?)
}

/// The call's answer as XML (an HTTP error status is an error; a fault is not looked for).
pub(super) async fn call_xml(
    client: &Client,
    route: &OdooRoute,
    service: Service,
    body: String,
) -> Result<String, Error> {
    let uri = endpoint(route, service)?;
    let signature = crate::http_client::signature(
        &route.signing_secret,
        crate::http_client::unix_now(),
        body.as_bytes(),
    );
    let mut req = Request::post(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| Error::BadUrl {
            url: route.url.as_str().to_owned(),
            reason: "cannot build a request for this URL".into(),
        })?;
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Some(sig) = signature {
        req.headers_mut().insert(crate::http_client::SIGNATURE, sig);
    }
    let resp = client.request(req).await.map_err(Error::Http)?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Status {
            status: status.as_u16(),
            reply: format!(
                "HTTP {} {} from Odoo XML-RPC",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The service's endpoint, made once at load ([`crate::config::OdooUrl`]).
fn endpoint(route: &OdooRoute, service: Service) -> Result<Uri, Error> {
    let bad = |reason: &str| Error::BadUrl {
        url: route.url.as_str().to_owned(),
        reason: reason.to_owned(),
    };
    let url = route.url.get().ok_or_else(|| bad("not a valid URL"))?;
    let uri = match service {
        Service::Common => &url.common,
        Service::Object => &url.object,
    };
    Ok(uri.clone())
}

/// XML-RPC parameters mxgate sends.
enum Param<'a> {
    Str(&'a str),
    Int(i64),
    False,
    Base64(&'a [u8]),
    Array(Vec<Param<'a>>),
    EmptyStruct,
}

fn method_call(method: &str, params: &[Param<'_>]) -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    s.push_str(method);
    s.push_str("</methodName><params>");
    for p in params {
        s.push_str("<param>");
        write_value(&mut s, p);
        s.push_str("</param>");
    }
    s.push_str("</params></methodCall>\n");
    s
}

fn write_value(s: &mut String, p: &Param<'_>) {
    s.push_str("<value>");
    match p {
        Param::Str(v) => {
            s.push_str("<string>");
            s.push_str(&escape(v));
            s.push_str("</string>");
        }
        Param::Int(i) => s.push_str(&format!("<int>{i}</int>")),
        Param::False => s.push_str("<boolean>0</boolean>"),
        Param::Base64(b) => {
            s.push_str("<base64>");
            s.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            s.push_str("</base64>");
        }
        Param::Array(items) => {
            s.push_str("<array><data>");
            for i in items {
                write_value(s, i);
            }
            s.push_str("</data></array>");
        }
        Param::EmptyStruct => s.push_str("<struct></struct>"),
    }
    s.push_str("</value>");
}

pub(super) fn escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(v: &str) -> String {
    v.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The first value of a `methodResponse`, as far as mxgate needs to read it.
#[derive(Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Text(String),
    /// Anything else (struct, array, nil): success, not inspected.
    Other,
}

impl Value {
    fn summary(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::Text(t) => t.chars().take(80).collect(),
            Value::Other => "ok".to_string(),
        }
    }
}

/// Decodes a `methodResponse`: a `<fault>` becomes [`Error::Fault`] with its faultString.
pub fn parse_response(xml: &str) -> Result<Value, Error> {
    if !xml.contains("<methodResponse") {
        return Err(Error::Fault(format!(
            "not an XML-RPC answer: {}",
            one_line(xml, 120)
        )));
    }
    if let Some(i) = xml.find("<fault>") {
        let fault = &xml[i..];
        let text = fault
            .find("faultString")
            .and_then(|j| first_value(&fault[j..]))
            .map_or_else(|| one_line(fault, FAULT_EXCERPT), |v| v.summary());
        return Err(Error::Fault(format!(
            "XML-RPC fault: {}",
            one_line(&text, FAULT_EXCERPT)
        )));
    }
    let Some(i) = xml.find("<params>") else {
        return Err(Error::Fault("XML-RPC answer without params".into()));
    };
    Ok(first_value(&xml[i..]).unwrap_or(Value::Other))
}

/// The first `<value>` in `xml`, typed by its first element.
pub(super) fn first_value(xml: &str) -> Option<Value> {
    let start = xml.find("<value>")? + "<value>".len();
    let rest = xml[start..].trim_start();
    let inner = |tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let body = rest.strip_prefix(&open)?;
        Some(unescape(&body[..body.find(&close)?]))
    };
    if let Some(v) = inner("int").or_else(|| inner("i4")).or_else(|| inner("i8")) {
        return v.trim().parse().ok().map(Value::Int);
    }
    if let Some(v) = inner("boolean") {
        return Some(Value::Bool(v.trim() == "1"));
    }
    if let Some(v) = inner("string") {
        return Some(Value::Text(v));
    }
    if rest.starts_with('<') {
        return Some(Value::Other);
    }
    // `<value>text</value>`: a string without a type element.
    let end = rest.find("</value>")?;
    Some(Value::Text(unescape(&rest[..end])))
}

fn one_line(s: &str, max: usize) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

#[cfg(test)]
#[path = "odoo_tests.rs"]
mod tests;
