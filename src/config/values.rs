//! Value types config strings are parsed into once, at load: a warming start date, a
//! schedule's day range, a provider's host pattern (in [`crate::providers`]). Run-time code
//! takes the typed value and never parses the string again.
//!
//! A bad string does not fail deserialization: [`Parsed`] keeps it with its error, and
//! [`Config::validate`](super::Config::validate) reports it at its key together with every
//! other problem. A `#[serde(try_from)]` error would stop serde at the first bad value, so
//! `check-config` would show one problem where the file has several.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A value parsed from its config string, or the reason the string is not one.
#[derive(Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    text: String,
    value: Result<T, String>,
}

impl<T: TryFrom<String, Error = String>> Parsed<T> {
    /// Parses `text` (built-in defaults, tests).
    pub fn new(text: impl Into<String>) -> Parsed<T> {
        let text = text.into();
        Parsed {
            value: T::try_from(text.clone()),
            text,
        }
    }
}

impl<T> Parsed<T> {
    /// The string as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value; `None` only in a config that failed validation.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().ok()
    }

    /// Why the string is not a value (what `validate` reports).
    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().err().map(String::as_str)
    }
}

impl<T> fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<'de, T: TryFrom<String, Error = String>> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Parsed::new)
    }
}

/// An `http://` or `https://` URL with a host: an `http` route's endpoint, parsed once so
/// each delivery attempt posts to the value, not to a string it parses again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(pub hyper::Uri);

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(s: String) -> Result<HttpUrl, String> {
        match s.parse::<hyper::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Ok(HttpUrl(u))
            }
            _ => Err(format!("{s:?} is not an http:// or https:// URL")),
        }
    }
}

/// A `YYYY-MM-DD` UTC date, as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub u64);

impl TryFrom<String> for Date {
    type Error = String;

    fn try_from(s: String) -> Result<Date, String> {
        parse_date(&s)
            .map(Date)
            .ok_or_else(|| format!("{s:?}: expected a date \"YYYY-MM-DD\""))
    }
}

/// Days of a warming schedule step: `"1-3"`, `"21+"` (open-ended) or a single day `"7"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayRange {
    pub first: u32,
    /// `None`: every day from `first` on.
    pub last: Option<u32>,
}

impl TryFrom<String> for DayRange {
    type Error = String;

    fn try_from(s: String) -> Result<DayRange, String> {
        parse_day_range(&s)
            .map(|(first, last)| DayRange { first, last })
            .ok_or_else(|| format!("{s:?}: expected \"1-3\", \"7\" or \"21+\""))
    }
}

/// `"1-3"` → (1, Some(3)); `"21+"` → (21, None); `"7"` → (7, Some(7)).
fn parse_day_range(s: &str) -> Option<(u32, Option<u32>)> {
    let s = s.trim();
    if let Some(from) = s.strip_suffix('+') {
        return Some((from.trim().parse().ok()?, None));
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, Some(b)))
        }
        None => s.parse().ok().map(|d| (d, Some(d))),
    }
}

/// `"2026-11-01"` → days since 1970-01-01 (UTC).
fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let mdays = [
        31,
        28 + u32::from(is_leap(y)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > mdays[m as usize - 1]
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_day_numbers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2026-11-23"), Some(20_780));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn bad_values_are_problems_at_their_keys_next_to_every_other_problem() {
        let toml = r#"
[warming]
start = { "a.test" = "2026-02-30" }
[[warming.schedule]]
days = "3-1"
[warming.providers.orange]
new_hourly = 0
warmed_hourly = 2
mx = ["bad host", "*.orange-mx.test"]
"#;
        let e = crate::config::Config::from_toml(toml, std::path::Path::new("t.toml"))
            .expect_err("invalid");
        let problems: Vec<_> = e
            .problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "warming.schedule[0].days",
                    r#""3-1": expected "1-3", "7" or "21+""#
                ),
                (
                    "warming.start.a.test",
                    r#""2026-02-30": expected a date "YYYY-MM-DD""#
                ),
                (
                    "warming.providers.orange.mx[0]",
                    r#""bad host" is not a DNS name (e.g. "orange.fr", "*.orange-mx.fr")"#
                ),
                ("warming.providers.orange", "hourly caps must be at least 1"),
            ],
            "{e}"
        );
    }

    #[test]
    fn day_ranges_parse() {
        assert_eq!(parse_day_range("1-3"), Some((1, Some(3))));
        assert_eq!(parse_day_range("21+"), Some((21, None)));
        assert_eq!(parse_day_range("3-1"), None);
    }
}
