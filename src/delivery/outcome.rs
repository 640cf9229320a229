//! The one place that maps delivery failures to [`Outcome`]s ([`classify`]), the data the
//! queue records.
//!
//! The rule for ERP routes: anything that says "not now" (connection refused, timeout, HTTP
//! 408/429/5xx, a full disk) is `Deferred` — the queue retries with backoff, nothing is
//! lost while the ERP is down. An HTTP 4xx is the ERP refusing this message: `Bounced`, with
//! the status line as reply. The message stays in the store, so an operator can fix the ERP
//! side and `mxgate queue retry` it.

use super::Error;
use crate::queue::Outcome;

/// The outcome of a failed attempt.
pub fn classify(err: &Error) -> Outcome {
    match err {
        Error::Status { status, reply } => classify_http(*status, reply),
        Error::Rejected(reply) => Outcome::Bounced {
            category: None,
            reply: reply.clone(),
        },
        // A remote MTA's refusal: categorised like the bounces that come back by mail.
        Error::SmtpRejected(reply) | Error::Unroutable(reply) => Outcome::Bounced {
            category: Some(crate::bounce::classify_reply(None, None, reply).category),
            reply: reply.clone(),
        },
        Error::RelayLater(_) | Error::NoRelay | Error::ForwardQueue => {
            Outcome::deferred(err.to_string())
        }
        // Connect refused/reset, timeouts, IO (disk full, permissions), a route the config no
        // longer has or that is not implemented yet: all fixable without the sender's help.
        Error::Http(_)
        | Error::Timeout(_)
        | Error::Io(_)
        | Error::BadUrl { .. }
        | Error::UnknownRoute(_)
        | Error::NotAvailable(_)
        | Error::Fault(_)
        | Error::Store(_) => Outcome::deferred(err.to_string()),
    }
}

/// A non-2xx HTTP answer from the ERP. `reply` is the status line (plus a body excerpt).
pub fn classify_http(status: u16, reply: &str) -> Outcome {
    match status {
        // Request Timeout, Too Many Requests, server errors: the ERP is down or busy.
        408 | 429 | 500..=599 => Outcome::deferred(reply),
        400..=499 => Outcome::Bounced {
            category: None,
            reply: reply.to_string(),
        },
        // 1xx/3xx (redirects are not followed): a misconfigured URL; keep retrying.
        _ => Outcome::deferred(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erp_down_or_busy_statuses_are_deferred() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_http(s, "x").as_label(), "deferred", "{s}");
        }
    }

    #[test]
    fn other_client_errors_bounce_with_the_status_line() {
        for s in [400, 401, 403, 404, 410, 413, 422] {
            let o = classify_http(s, "HTTP 404 Not Found");
            assert_eq!(
                o,
                Outcome::Bounced {
                    category: None,
                    reply: "HTTP 404 Not Found".into()
                },
                "{s}"
            );
        }
    }

    #[test]
    fn redirects_are_deferred_not_followed() {
        assert_eq!(classify_http(302, "HTTP 302 Found").as_label(), "deferred");
    }

    #[test]
    fn transport_errors_are_deferred() {
        let e = Error::Timeout(std::time::Duration::from_secs(2));
        assert!(
            matches!(classify(&e), Outcome::Deferred { reason, .. } if reason.contains("timed out"))
        );
        let e = Error::Io(std::io::Error::other("disk full"));
        assert_eq!(classify(&e).as_label(), "deferred");
    }
}
