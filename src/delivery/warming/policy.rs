//! The `[warming]` policy one config describes: the schedule, provider rates and table. A
//! reload builds a new one; the counters it is applied to ([`super::Warming`]) stay.

use std::collections::HashMap;

use super::parse_date;
use crate::config::{Config, ProviderRate, WarmingStep, parse_day_range};
use crate::providers::ProviderTable;

/// ((first day, last day or open-ended), daily cap or full quota).
type Step = ((u32, Option<u32>), Option<u64>);

/// What the config says: the schedule, provider rates and table.
pub(super) struct Policy {
    pub steps: Vec<Step>,
    pub rates: std::collections::BTreeMap<String, ProviderRate>,
    /// Recognises a recipient's provider (config table, then built-in).
    pub providers: ProviderTable,
    /// Configured start day per domain.
    pub start: HashMap<String, u64>,
    pub quiet_ms: u64,
    pub bounce_domain: String,
}

impl Policy {
    pub fn new(config: &Config) -> Policy {
        let w = &config.warming;
        let steps = w
            .steps()
            .iter()
            .filter_map(|s: &WarmingStep| parse_day_range(&s.days).map(|r| (r, s.daily_cap)))
            .collect();
        let start = w
            .start
            .iter()
            .filter_map(|(d, date)| parse_date(date).map(|day| (d.to_ascii_lowercase(), day)))
            .collect();
        Policy {
            steps,
            rates: w.provider_rates(),
            providers: ProviderTable::new(&w.provider_rates()),
            start,
            quiet_ms: w.throttle_quiet.get().as_millis() as u64,
            bounce_domain: config.bounce_domain().to_ascii_lowercase(),
        }
    }
}
