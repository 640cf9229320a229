//! `/api/bounces/summary` and `/api/bounces/classification` (SPEC "Admin HTTP"): the
//! dashboard's figures over the hourly statistics, filtered by date range, sending domain,
//! provider, email type and sending IP.
//!
//! `from`/`to`: `YYYY-MM-DD` (a whole UTC day; `to` inclusive), RFC 3339
//! (`2026-11-23T08:00:00Z`) or seconds since the epoch. Default: the last 7 days up to now.
//! `provider` takes the label (`gmail`) or the display name (`Gmail`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::providers::Provider;
use crate::stats::{Filter, Report};

const DAY_MS: u64 = 86_400_000;
/// Default range when `from` is absent.
const DEFAULT_DAYS: u64 = 7;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct BounceQuery {
    from: Option<String>,
    to: Option<String>,
    sending_domain: Option<String>,
    provider: Option<String>,
    email_type: Option<String>,
    sending_ip: Option<String>,
}

/// `GET /api/bounces/summary`
pub async fn summary(State(s): State<super::State>, Query(q): Query<BounceQuery>) -> Response {
    match report(&s, &q).await {
        Ok((f, r)) => {
            let mut v = json!(r.summary);
            v["from"] = json!(rfc3339(f.from_ms));
            v["to"] = json!(rfc3339(f.to_ms));
            Json(v).into_response()
        }
        Err(resp) => resp,
    }
}

/// `GET /api/bounces/classification`: `rows` sorted by count, plus the chart series and the
/// values seen per filter (`facets`) for the dashboard.
pub async fn classification(
    State(s): State<super::State>,
    Query(q): Query<BounceQuery>,
) -> Response {
    match report(&s, &q).await {
        Ok((f, r)) => Json(json!({
            "from": rfc3339(f.from_ms),
            "to": rfc3339(f.to_ms),
            "total": r.summary.bounced,
            "rows": r.rows,
            "series": r.series,
            "facets": r.facets,
        }))
        .into_response(),
        Err(resp) => resp,
    }
}

async fn report(s: &super::State, q: &BounceQuery) -> Result<(Filter, Report), Response> {
    let now = s.stats.now_ms();
    let f = filter(q, now)
        .map_err(|msg| (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response())?;
    let stats = s.stats.clone();
    let f2 = f.clone();
    match tokio::task::spawn_blocking(move || stats.report(&f2)).await {
        Ok(Ok(r)) => Ok((f, r)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "statistics query failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "statistics store unavailable" })),
            )
                .into_response())
        }
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

/// The query → a [`Filter`]; errors name the bad parameter.
pub fn filter(q: &BounceQuery, now_ms: u64) -> Result<Filter, String> {
    let to_ms = match nonempty(&q.to) {
        Some(t) => parse_time(t, true).ok_or_else(|| bad_time("to", t))?,
        None => now_ms,
    };
    let from_ms = match nonempty(&q.from) {
        Some(t) => parse_time(t, false).ok_or_else(|| bad_time("from", t))?,
        None => to_ms.saturating_sub(DEFAULT_DAYS * DAY_MS),
    };
    if from_ms > to_ms {
        return Err("`from` is after `to`".into());
    }
    let provider = nonempty(&q.provider).map(|p| {
        Provider::ALL
            .iter()
            .find(|x| x.as_label() == p || x.display_name().eq_ignore_ascii_case(p))
            .map_or_else(|| p.to_ascii_lowercase(), |x| x.as_label().to_string())
    });
    Ok(Filter {
        from_ms,
        to_ms,
        sending_domain: nonempty(&q.sending_domain).map(str::to_string),
        provider,
        email_type: nonempty(&q.email_type).map(str::to_string),
        // The empty sending IP (system-chosen source) is a value of its own: `sending_ip=`
        // means "no filter", `sending_ip=default` selects it.
        sending_ip: nonempty(&q.sending_ip).map(|ip| {
            if ip == "default" {
                String::new()
            } else {
                ip.to_string()
            }
        }),
    })
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn bad_time(name: &str, v: &str) -> String {
    format!("`{name}`={v:?}: use YYYY-MM-DD, RFC 3339 or seconds since the epoch")
}

/// `YYYY-MM-DD` (start of the day, or its last millisecond when `end`), RFC 3339, or epoch
/// seconds → ms since the epoch.
pub(super) fn parse_time(v: &str, end: bool) -> Option<u64> {
    if let Ok(secs) = v.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let (text, day) = if v.len() == 10 {
        (format!("{v}T00:00:00Z"), true)
    } else {
        (v.to_string(), false)
    };
    let t = humantime::parse_rfc3339_weak(&text).ok()?;
    let ms = u64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(if day && end { ms + DAY_MS - 1 } else { ms })
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: &str, to: &str) -> BounceQuery {
        BounceQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            ..BounceQuery::default()
        }
    }

    #[test]
    fn dates_cover_whole_days_and_other_forms_parse() {
        let f = filter(&q("2026-11-01", "2026-11-01"), 0).expect("ok");
        assert_eq!(f.to_ms - f.from_ms, DAY_MS - 1);
        let f = filter(&q("2026-11-01T10:00:00Z", "1800000000"), 0).expect("ok");
        assert_eq!(f.to_ms, 1_800_000_000_000);
        assert!(filter(&q("yesterday", ""), 0).is_err());
        assert!(filter(&q("2026-11-02", "2026-11-01"), 0).is_err());
    }

    #[test]
    fn defaults_to_the_last_week_and_providers_normalise() {
        let now = 100 * DAY_MS;
        let query = BounceQuery {
            provider: Some("Gmail".into()),
            ..BounceQuery::default()
        };
        let f = filter(&query, now).expect("ok");
        assert_eq!((f.from_ms, f.to_ms), (93 * DAY_MS, now));
        assert_eq!(f.provider.as_deref(), Some("gmail"));
    }
}
