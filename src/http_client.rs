//! The HTTP client mxgate talks to the ERP with: deliveries to `http` and `odoo` routes and
//! the events webhook. Shared infrastructure, like [`dns`](crate::dns) and
//! [`tls`](crate::tls), so the webhook does not reach into the delivery stage for it.
//!
//! `http://` and `https://` alike. HTTPS checks the server's certificate against the webpki
//! roots, the system store and the endpoint's `ca_file` — all three, so a private CA does not
//! cost the public ones (Odoo.sh and a self-hosted ERP behind the same mxgate). With
//! `tls_verify = false` any certificate passes and a warning says so each time a client
//! is built (start and reload). A failed handshake is a connect error whose cause chain
//! (`invalid peer certificate: UnknownIssuer`) becomes the recipient's last reply.
//!
//! [`signature`]: with a `signing_secret`, every request carries `X-Mxgate-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` (Stripe's scheme, which
//! ERP developers know): the receiver proves the body came from mxgate, and refusing an old
//! `t` stops a captured request from being replayed later.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};

use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use crate::config::{HttpsTrust, Secret};
use crate::dns::Dns;
use crate::tls::AnyCert;

/// Carries the request's signature when the endpoint has a `signing_secret`.
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-mxgate-signature");

/// Keeps connections to the ERP alive between requests.
pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for one endpoint; `name` (`routes.crm`, `events`) only labels the warning.
pub fn client(name: &str, trust: &HttpsTrust<'_>) -> Client {
    build(name, trust, HttpConnector::new())
}

/// As [`client`], for hosts named by mail domains (`mta-sts.<domain>`, a TLS-RPT `rua`):
/// names are looked up with mxgate's own resolver (`[dns]`) rather than the system's, like
/// every other name delivery looks up.
pub type ResolvingClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector<DnsResolver>>, Full<Bytes>>;

/// A [`ResolvingClient`] for endpoint `name`.
pub fn resolving_client(name: &str, trust: &HttpsTrust<'_>, dns: Dns) -> ResolvingClient {
    build(
        name,
        trust,
        HttpConnector::new_with_resolver(DnsResolver(dns)),
    )
}

fn build<R>(
    name: &str,
    trust: &HttpsTrust<'_>,
    mut conn: HttpConnector<R>,
) -> hyper_util::client::legacy::Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    R: tower_service::Service<Name> + Clone + Send + Sync + 'static,
    R::Response: Iterator<Item = SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    if trust.insecure {
        tracing::warn!(
            endpoint = name,
            "tls_verify = false: the certificate of this https:// endpoint is not checked"
        );
    }
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(10)));
    // The TLS wrapper needs the inner connector to pass https:// URIs through.
    conn.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(name, trust))
        .https_or_http()
        .enable_http1()
        .wrap_connector(conn);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// Host names of a [`ResolvingClient`], through [`Dns`] (A and AAAA). The port is left 0:
/// the connector puts the URL's in.
#[derive(Clone)]
pub struct DnsResolver(Dns);

impl tower_service::Service<Name> for DnsResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let dns = self.0.clone();
        Box::pin(async move {
            let ips = dns
                .ips(name.as_str())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if ips.is_empty() {
                return Err(std::io::Error::other(format!("{name}: no address")));
            }
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

fn tls_config(name: &str, trust: &HttpsTrust<'_>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    if trust.insecure {
        return builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert::new(provider)))
            .with_no_client_auth();
    }
    builder
        .with_root_certificates(roots(name, trust))
        .with_no_client_auth()
}

/// webpki roots + the system store + `ca_file`. A system store that cannot be read
/// (a minimal container) leaves the other two: logged, not fatal.
fn roots(name: &str, trust: &HttpsTrust<'_>) -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    if let Some(e) = native.errors.first() {
        tracing::debug!(endpoint = name, error = %e, "system certificate store partly unreadable");
    }
    let (ok, bad) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(endpoint = name, ok, bad, "system roots loaded");
    if let Some(ca) = trust.ca_file {
        let (ok, bad) = roots.add_parsable_certificates(ca.certs.iter().cloned());
        if bad > 0 || ok == 0 {
            tracing::warn!(endpoint = name, ca_file = %ca.path, ok, bad, "ca_file: certificates that are no CA were skipped");
        }
    }
    roots
}

/// The `X-Mxgate-Signature` value of `body` at `unix` seconds; `None` without a secret.
pub fn signature(secret: &Secret, unix: u64, body: &[u8]) -> Option<HeaderValue> {
    if secret.is_empty() {
        return None;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{unix}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    HeaderValue::from_str(&format!("t={unix},v1={hex}")).ok()
}

/// Seconds since the epoch by the real wall clock, for [`signature`]: the receiver checks
/// `t` against its own clock, so a test-stepped [`Clock`](crate::clock::Clock) would only
/// make every signature look stale.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // Reference: python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec",
        //   b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        let v = signature(&Secret::new("whsec"), 1_700_000_000, br#"{"a":1}"#).expect("set");
        assert_eq!(
            v.to_str().expect("ascii"),
            "t=1700000000,v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
        assert!(signature(&Secret::default(), 1, b"x").is_none());
    }
}
