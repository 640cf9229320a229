//! `[suspension]`: automatic suspension of a sending domain whose permanent bounce rate
//! (or spam complaint rate, issue 17) is too high (issue 6 item 7; SPEC "Replies": `550` while suspended). Not named by SPEC; the
//! defaults are the "5% of the last 500 sends".

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuspensionConfig {
    /// Off = bounce rates are never acted on.
    pub enabled: bool,
    /// Sends (relayed recipients with a final outcome) per sending domain the rate is
    /// computed over: the last `window` of them.
    pub window: usize,
    /// Suspend when more than this percentage of the window bounced permanently.
    pub threshold_percent: f64,
    /// Suspend when spam complaints (ARF feedback reports) over the same last `window`
    /// sends are more than this percentage of them (issue 17 item 7; Gmail's and Yahoo's
    /// bulk sender line is 0.3%). Same `min_sends` as the bounce rate.
    pub complaint_threshold_percent: f64,
    /// No verdict before a domain has this many sends in its window (one bounce out of
    /// three first sends is no storm).
    pub min_sends: usize,
}

impl Default for SuspensionConfig {
    fn default() -> Self {
        SuspensionConfig {
            enabled: true,
            window: 500,
            threshold_percent: 5.0,
            complaint_threshold_percent: 0.3,
            min_sends: 100,
        }
    }
}

impl SuspensionConfig {
    /// Problems as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.window == 0 || self.window > 1_000_000 {
            p.push(("suspension.window", "must be 1..=1000000".to_string()));
        }
        if !(self.threshold_percent > 0.0 && self.threshold_percent <= 100.0) {
            p.push((
                "suspension.threshold_percent",
                "must be > 0 and <= 100".to_string(),
            ));
        }
        if !(self.complaint_threshold_percent > 0.0 && self.complaint_threshold_percent <= 100.0) {
            p.push((
                "suspension.complaint_threshold_percent",
                "must be > 0 and <= 100".to_string(),
            ));
        }
        if self.min_sends == 0 || self.min_sends > self.window {
            p.push((
                "suspension.min_sends",
                "must be 1..=suspension.window".to_string(),
            ));
        }
        p
    }
}
