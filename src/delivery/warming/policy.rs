//! The `[warming]` policy one config describes: the schedule, provider rates and table. A
//! reload builds a new one; the counters it is applied to ([`super::Warming`]) stay.

use std::collections::HashMap;

use crate::config::{Config, DayRange, Parsed, ProviderRate};
use crate::providers::{HostPattern, ProviderTable};

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
            .filter_map(|s| {
                s.days
                    .get()
                    .map(|&DayRange { first, last }| ((first, last), s.daily_cap))
            })
            .collect();
        let start = w
            .start
            .iter()
            .filter_map(|(d, date)| date.get().map(|day| (d.to_ascii_lowercase(), day.0)))
            .collect();
        let rates = w.provider_rates();
        let hosts =
            |list: &[Parsed<HostPattern>]| list.iter().filter_map(Parsed::get).cloned().collect();
        let providers = ProviderTable::new(
            rates
                .iter()
                .map(|(name, r)| (name.as_str(), hosts(&r.domains), hosts(&r.mx))),
        );
        Policy {
            steps,
            rates,
            providers,
            start,
            quiet_ms: w.throttle_quiet.get().as_millis() as u64,
            bounce_domain: config.bounce_domain().to_ascii_lowercase(),
        }
    }
}
