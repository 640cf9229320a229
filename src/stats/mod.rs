//! Delivery and bounce statistics that survive restarts: per-hour counters in RocksDB
//! ([`store`]) of delivered and bounced recipients by sending domain, email type, sending IP
//! and provider, bounces also by category, reply code, enhanced code and kind. They answer
//! `/api/bounces/summary`, `/api/bounces/classification` and the dashboard.
//!
//! Input: what the [`report::Observer`](crate::report::Observer) counts — a delivery
//! attempt's as writes ([`Stats::delivered_write`], [`Stats::bounced_write`]) committed in
//! the queue's batch that records it, a DSN's by [`Stats::bounced`] (bounce intake). Output: [`Report`] for a
//! [`Filter`] (hour range plus dimension filters).
//!
//! Only relayed (outbound) recipients are counted: these statistics describe the ERP's sends,
//! not mail handed to the ERP. A DSN counts when its VERP token names one of our messages.
//!
//! This file holds the hourly counters and their reports; the per-delivery records that let
//! a late DSN or complaint find its delivery (sending IP, Message-ID) and their pruning are in
//! [`sent_records`].

mod sent_records;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::bounce::Category;
use crate::providers::Provider;

use crate::db::{Db, Write};
pub use sent_records::{PRUNE_EVERY, SENT_FROM_GRACE};
use store::{BOUNCED, DELIVERED, bounced_key, count_write, delivered_key};
pub use store::{StatsError, Store};

const HOUR_MS: u64 = 3_600_000;

/// The dimensions every counter has.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dims {
    pub sending_domain: String,
    /// `transactional` | `mass`: the message's stored stream.
    pub email_type: String,
    /// Source IP of the delivery; empty when the system picked it.
    pub sending_ip: String,
    /// Provider label (`gmail`, ..., `other`).
    pub provider: String,
}

/// What a bounce adds to [`Dims`].
#[derive(Clone, Debug)]
pub struct BounceInfo {
    pub category: Category,
    /// SMTP reply code (`550`), empty when none.
    pub reply_code: String,
    /// Enhanced status code (`5.1.1`), empty when none.
    pub status: String,
    pub permanent: bool,
}

/// Statistics handle (cheap to clone).
#[derive(Clone)]
pub struct Stats {
    store: Store,
    clock: crate::clock::Clock,
}

impl Stats {
    /// The statistics in the `stats` family of the server's database.
    pub fn in_db(db: &Db, clock: crate::clock::Clock) -> Stats {
        Stats {
            store: Store::in_db(db),
            clock,
        }
    }

    /// Statistics alone in a database of their own in `<data_dir>/stats` (tests).
    pub fn open(data_dir: &Path, clock: crate::clock::Clock) -> Result<Stats, StatsError> {
        Ok(Stats {
            store: Store::open(&data_dir.join("stats"))?,
            clock,
        })
    }

    /// Now, on the server's clock (default range of a report).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn close(&self) {
        self.store.close();
    }

    pub fn delivered(&self, at_ms: u64, d: &Dims) {
        self.add(&delivered_key(at_ms, d));
    }

    pub fn bounced(&self, at_ms: u64, d: &Dims, b: &BounceInfo) {
        self.add(&bounced_key(at_ms, d, b));
    }

    /// [`Stats::delivered`] as a write for another store's batch: given to
    /// `Queue::record_then_writing`, the count is committed with the recipient's state
    /// change, under the same WAL fsync.
    pub fn delivered_write(at_ms: u64, d: &Dims) -> Write {
        count_write(delivered_key(at_ms, d))
    }

    /// [`Stats::bounced`] as a write for another store's batch.
    pub fn bounced_write(at_ms: u64, d: &Dims, b: &BounceInfo) -> Write {
        count_write(bounced_key(at_ms, d, b))
    }

    fn add(&self, key: &[u8]) {
        match self.store.add(key, 1) {
            Ok(()) | Err(StatsError::Closed) => {}
            Err(e) => tracing::warn!(error = %e, "cannot count in the statistics store"),
        }
    }

    /// Blocking: every counter in the filter's range that matches it, aggregated.
    pub fn report(&self, f: &Filter) -> Result<Report, StatsError> {
        let mut acc = Acc::default();
        let start = store::hour_key(hour(f.from_ms), 0, &[]);
        let end = store::hour_key(hour(f.to_ms).saturating_add(1), 0, &[]);
        let start = &start[..store::HOURS.len() + 4];
        let end = &end[..store::HOURS.len() + 4];
        self.store.scan(start, end, |k, v| {
            if let Some((h, kind, dims)) = store::parse_hour_key(k) {
                acc.add(f, h, kind, &dims, store::decode(v));
            }
        })?;
        Ok(acc.finish(f))
    }
}

pub fn hour(ms: u64) -> u32 {
    u32::try_from(ms / HOUR_MS).unwrap_or(u32::MAX)
}

/// Which counters a report covers. Empty strings match everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub from_ms: u64,
    pub to_ms: u64,
    pub sending_domain: Option<String>,
    pub provider: Option<String>,
    pub email_type: Option<String>,
    pub sending_ip: Option<String>,
}

impl Filter {
    fn matches(&self, d: &[String]) -> bool {
        let ok = |want: &Option<String>, have: Option<&String>| match want {
            None => true,
            Some(w) => have.is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        ok(&self.sending_domain, d.first())
            && ok(&self.email_type, d.get(1))
            && ok(&self.sending_ip, d.get(2))
            && ok(&self.provider, d.get(3))
    }
}

/// The five figures of the dashboard (SPEC `/api/bounces/summary`), plus the counts the
/// rates are computed from. Rates are percentages of `delivered + bounced`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub permanent_bounce: u64,
    pub permanent_bounce_rate: f64,
    pub esp_blocks: u64,
    pub delivered: u64,
    pub delivery_rate: f64,
    pub bounced: u64,
    pub transient_bounce: u64,
}

/// One row of `/api/bounces/classification`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Provider label (`gmail`); `provider_name` is what people read (`Gmail`).
    pub provider: String,
    pub provider_name: String,
    pub category: String,
    pub reply_code: String,
    pub status: String,
    pub definition: String,
    pub fix: String,
    pub count: u64,
    /// Share of all bounces in the range, in percent.
    pub percent: f64,
}

/// Delivered and bounced in one hour (the dashboard's chart).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    /// Start of the hour, ms since the epoch.
    pub hour_ms: u64,
    pub delivered: u64,
    pub bounced: u64,
}

/// Values seen in the range, for the dashboard's filter lists.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Facets {
    pub sending_domain: BTreeSet<String>,
    pub provider: BTreeSet<String>,
    pub email_type: BTreeSet<String>,
    pub sending_ip: BTreeSet<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub summary: Summary,
    pub rows: Vec<Row>,
    pub series: Vec<Point>,
    pub facets: Facets,
}

#[derive(Default)]
struct Acc {
    summary: Summary,
    rows: BTreeMap<(String, String, String, String), u64>,
    series: BTreeMap<u32, (u64, u64)>,
    facets: Facets,
}

impl Acc {
    fn add(&mut self, f: &Filter, h: u32, kind: u8, d: &[String], n: i64) {
        let n = u64::try_from(n).unwrap_or(0);
        if n == 0 || d.len() < 4 {
            return;
        }
        let at = u64::from(h) * HOUR_MS;
        if at + HOUR_MS <= f.from_ms || at > f.to_ms {
            return;
        }
        self.facets.sending_domain.insert(d[0].clone());
        self.facets.email_type.insert(d[1].clone());
        self.facets.sending_ip.insert(d[2].clone());
        self.facets.provider.insert(d[3].clone());
        if !f.matches(d) {
            return;
        }
        let point = self.series.entry(h).or_default();
        match kind {
            DELIVERED => {
                self.summary.delivered += n;
                point.0 += n;
            }
            BOUNCED if d.len() >= 8 => {
                point.1 += n;
                self.summary.bounced += n;
                if d[7] == "permanent" {
                    self.summary.permanent_bounce += n;
                } else {
                    self.summary.transient_bounce += n;
                }
                if d[4] == Category::Blocked.as_str() && d[3] != Provider::Other.as_label() {
                    self.summary.esp_blocks += n;
                }
                let key = (d[3].clone(), d[4].clone(), d[5].clone(), d[6].clone());
                *self.rows.entry(key).or_default() += n;
            }
            _ => {}
        }
    }

    fn finish(self, _f: &Filter) -> Report {
        let mut summary = self.summary;
        let sends = summary.delivered + summary.bounced;
        summary.delivery_rate = percent(summary.delivered, sends);
        summary.permanent_bounce_rate = percent(summary.permanent_bounce, sends);
        let total = summary.bounced;
        let mut rows: Vec<Row> = self
            .rows
            .into_iter()
            .map(|((provider, category, reply_code, status), count)| {
                let cat = Category::from_name(&category);
                Row {
                    provider_name: provider_name(&provider),
                    provider,
                    definition: cat.map(|c| c.definition()).unwrap_or("").to_string(),
                    fix: cat.map(|c| c.fix_tip()).unwrap_or("").to_string(),
                    category,
                    reply_code,
                    status,
                    count,
                    percent: percent(count, total),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.category.cmp(&b.category))
        });
        let series = self
            .series
            .into_iter()
            .map(|(h, (delivered, bounced))| Point {
                hour_ms: u64::from(h) * HOUR_MS,
                delivered,
                bounced,
            })
            .collect();
        Report {
            summary,
            rows,
            series,
            facets: self.facets,
        }
    }
}

/// `part` of `whole` in percent, two decimals; 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

fn provider_name(label: &str) -> String {
    Provider::ALL
        .iter()
        .find(|p| p.as_label() == label)
        .map_or_else(|| label.to_string(), |p| p.display_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(domain: &str, provider: &str) -> Dims {
        Dims {
            sending_domain: domain.into(),
            email_type: "transactional".into(),
            sending_ip: String::new(),
            provider: provider.into(),
        }
    }

    fn bounce(cat: Category, code: &str, status: &str, permanent: bool) -> BounceInfo {
        BounceInfo {
            category: cat,
            reply_code: code.into(),
            status: status.into(),
            permanent,
        }
    }

    #[test]
    fn report_sums_filters_and_ranks_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Stats::open(dir.path(), crate::clock::Clock::system()).expect("open");
        let t = 500 * HOUR_MS;
        for _ in 0..6 {
            s.delivered(t, &dims("a.test", "gmail"));
        }
        s.delivered(t + HOUR_MS, &dims("b.test", "yahoo"));
        let inv = bounce(Category::InvalidAddress, "550", "5.1.1", true);
        s.bounced(t, &dims("a.test", "gmail"), &inv);
        s.bounced(t, &dims("a.test", "gmail"), &inv);
        let blk = bounce(Category::Blocked, "554", "5.7.1", true);
        s.bounced(t + HOUR_MS, &dims("b.test", "yahoo"), &blk);
        let full = bounce(Category::MailboxFull, "452", "4.2.2", false);
        s.bounced(t, &dims("a.test", "other"), &full);

        let all = Filter {
            from_ms: t,
            to_ms: t + 2 * HOUR_MS,
            ..Filter::default()
        };
        let r = s.report(&all).expect("report");
        assert_eq!(r.summary.delivered, 7);
        assert_eq!(r.summary.bounced, 4);
        assert_eq!(r.summary.permanent_bounce, 3);
        assert_eq!(r.summary.esp_blocks, 1);
        assert_eq!(r.summary.delivery_rate, 63.64);
        assert_eq!(r.summary.permanent_bounce_rate, 27.27);
        assert_eq!(r.rows[0].category, "Invalid address");
        assert_eq!((r.rows[0].count, r.rows[0].percent), (2, 50.0));
        assert_eq!(r.rows[0].provider_name, "Gmail");
        assert_eq!(r.series.len(), 2);

        let b_only = Filter {
            sending_domain: Some("b.test".into()),
            ..all.clone()
        };
        let r = s.report(&b_only).expect("report");
        assert_eq!((r.summary.delivered, r.summary.bounced), (1, 1));
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.facets.sending_domain.len(), 2, "facets ignore the filter");

        let earlier = Filter {
            from_ms: 0,
            to_ms: t - 1,
            ..Filter::default()
        };
        assert_eq!(
            s.report(&earlier).expect("report").summary,
            Summary::default()
        );
    }
}
