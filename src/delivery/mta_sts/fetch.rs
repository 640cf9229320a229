//! RFC 8461 §3.3: the policy fetch, `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! with the project's HTTPS client (certificate checked against the webpki and system
//! roots and `relay.mta_sts.ca_file`; redirects are not followed, only a 200 counts).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;

use super::super::tls_rpt::ResultType;
use crate::http_client::ResolvingClient;

/// §3.3 leaves the size to the sender; 64 KiB is what common implementations allow.
const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Why no policy text came back: the RFC 8460 result type and the words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FetchError {
    pub result: ResultType,
    pub reason: String,
}

fn fetch_error(reason: String) -> FetchError {
    FetchError {
        result: ResultType::StsPolicyFetchError,
        reason,
    }
}

/// The policy file of `domain`, from port `port` (443 but in tests), within `timeout`.
pub async fn fetch(
    client: &ResolvingClient,
    domain: &str,
    port: u16,
    timeout: Duration,
) -> Result<String, FetchError> {
    let url = if port == 443 {
        format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
    } else {
        format!("https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt")
    };
    let req = Request::get(url.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|e| fetch_error(format!("{url}: {e}")))?;
    let resp = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => return Err(fetch_error(format!("{url}: no answer within {timeout:?}"))),
        Ok(Err(e)) => {
            let result = if is_certificate_error(&e) {
                ResultType::StsWebpkiInvalid
            } else {
                ResultType::StsPolicyFetchError
            };
            return Err(FetchError {
                result,
                reason: format!("{url}: {}", crate::error_chain::chain(&e)),
            });
        }
        Ok(Ok(resp)) => resp,
    };
    if resp.status() != hyper::StatusCode::OK {
        return Err(fetch_error(format!("{url}: HTTP {}", resp.status())));
    }
    let body = tokio::time::timeout(
        timeout,
        Limited::new(resp.into_body(), MAX_POLICY_BYTES).collect(),
    )
    .await
    .map_err(|_| fetch_error(format!("{url}: body not received within {timeout:?}")))?
    .map_err(|e| {
        fetch_error(format!(
            "{url}: body: {e} (at most {MAX_POLICY_BYTES} bytes)"
        ))
    })?
    .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| FetchError {
        result: ResultType::StsPolicyInvalid,
        reason: format!("{url}: the policy is not UTF-8"),
    })
}

/// Whether the handshake failed on the server's certificate (a rustls error somewhere in
/// the cause chain), which RFC 8460 reports apart as `sts-webpki-invalid`.
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = c.downcast_ref::<rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(rustls::Error::InvalidCertificate(_)) =
                inner.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        cause = c.source();
    }
    false
}
