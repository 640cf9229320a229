//! Counting: where an outcome becomes Prometheus metrics, hourly statistics, the sent
//! records (`i/` sending IP, `m/` Message-ID) and a bounce-rate sample.
//!
//! Split from the observer's entry points ([`super`]) because what is counted, and under
//! which labels (the `sending_domain`, provider and category rules), is one concern shared
//! by the attempt and the DSN paths, while turning an outcome into an ERP event is another
//! ([`super::event`]).

use crate::bounce::{self, Category, DeliveryKind, RecipientResult};
use crate::db::Write;
use crate::events::Kind;
use crate::metrics::BounceLabels;
use crate::queue::QueuedMessage;
use crate::stats::{BounceInfo, Dims, Stats};

use super::{Attempt, Observer, Returned};

/// `sending_domain` label of a bounce whose original message is unknown (no valid token).
const UNKNOWN_DOMAIN: &str = "unknown";

impl Observer {
    /// The statistics of a reported attempt, as writes for the queue's batch: what
    /// [`Observer::report`] counts in the statistics for `a`, committed with the
    /// recipient's new state under one WAL fsync (`Queue::record_then_writing`), so a crash
    /// keeps both or neither. A delivery adds its hourly counter and the records a later
    /// DSN or complaint finds it by (Message-ID, sending IP); a bounce or an expiry its
    /// counter under the category the record carries. `report` counts everything else
    /// (metrics, suspension, suppression) and leaves the statistics to this.
    pub fn stats_writes(&self, a: &Attempt<'_>) -> Vec<Write> {
        let Some(kind) = self.counted_kind(a).filter(|_| a.outbound()) else {
            return Vec::new();
        };
        let now = self.inner.clock.now_ms();
        let dims = self.outbound_dims(a);
        match kind {
            Kind::Delivered => {
                let mut writes = vec![Stats::delivered_write(now, &dims)];
                writes.extend(Stats::message_id_write(now, &a.info.message_id, a.msg.id));
                if let (Some(ip), Some(idx)) = (a.sending_ip, rcpt_index(a)) {
                    let ip = ip.to_string();
                    writes.push(Stats::sending_ip_write(now, a.msg.id, idx, &ip));
                }
                writes
            }
            Kind::Bounced | Kind::Expired => {
                let b = bounce_info(&a.reply, a.category, kind == Kind::Expired);
                vec![Stats::bounced_write(now, &dims, &b)]
            }
            Kind::Deferred
            | Kind::Suspended
            | Kind::Complained
            | Kind::ClusterDown
            | Kind::ClusterUp
            | Kind::RateLimited => Vec::new(),
        }
    }

    /// The relayed side of a reported attempt, but for its statistics (already committed
    /// with the queue's record, [`Observer::stats_writes`]): a delivery is counted in the
    /// metrics; a bounce or an expiry is counted under the category the record carries, and
    /// fed to the suspension and (a bounce) the suppression rule. Returns what it was
    /// counted as.
    pub(super) async fn count_outbound(&self, a: &Attempt<'_>, kind: Kind) -> Option<BounceInfo> {
        let dims = self.outbound_dims(a);
        match kind {
            Kind::Delivered => {
                self.inner.metrics.delivered(
                    &dims.sending_domain,
                    &dims.provider,
                    &dims.email_type,
                    &dims.sending_ip,
                );
                self.count_send(&dims.sending_domain, false).await;
                None
            }
            Kind::Bounced | Kind::Expired => {
                let b = bounce_info(&a.reply, a.category, kind == Kind::Expired);
                self.count_bounce_metrics(&dims, &b);
                if kind == Kind::Bounced {
                    let address = Some(a.rcpt.address.as_str());
                    // The record keeps the category `delivery::outcome` read from this reply;
                    // reading it again (pure, same function) tells whether words decided.
                    let certain = crate::bounce::classify_reply(None, None, &a.reply).certain;
                    let verdict = (b.category, b.permanent, certain);
                    self.suppress_bounce(address, verdict, &a.reply, a.msg.id)
                        .await;
                }
                self.count_send(&dims.sending_domain, kind == Kind::Bounced && b.permanent)
                    .await;
                Some(b)
            }
            Kind::Deferred
            | Kind::Suspended
            | Kind::Complained
            | Kind::ClusterDown
            | Kind::ClusterUp
            | Kind::RateLimited => None,
        }
    }

    /// The dimensions a relayed attempt is counted under.
    fn outbound_dims(&self, a: &Attempt<'_>) -> Dims {
        let mut dims = self.dims(a.msg, &a.rcpt.address, a.info.email_type, &a.reply);
        if let Some(ip) = a.sending_ip {
            dims.sending_ip = ip.to_string();
        }
        dims
    }

    /// The statistics write of a DSN that made recipient `idx` of `msg` `bounced`, for the
    /// queue's batch that records it ([`Queue::bounce_reported`](crate::queue::Queue::bounce_reported)):
    /// a crash keeps both or neither, and a DSN read again is not counted twice.
    pub fn dsn_stats_write(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        failed: &RecipientResult,
    ) -> Write {
        let (dims, b) = self.dsn_counted(msg, idx, failed);
        Stats::bounced_write(self.inner.clock.now_ms(), &dims, &b)
    }

    /// A DSN made recipient `idx` of `msg` `bounced` (its statistics were committed with
    /// that, [`Self::dsn_stats_write`]; its metrics are counted for the whole DSN,
    /// [`Self::count_returned`]): counted, when permanent, in the suspension. Returns the
    /// category the bounce is counted under.
    pub(super) async fn count_dsn(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        failed: &RecipientResult,
    ) -> Category {
        let (dims, b) = self.dsn_counted(msg, idx, failed);
        if b.permanent {
            self.count_send(&dims.sending_domain, true).await;
        }
        b.category
    }

    /// What a DSN's bounce of recipient `idx` of `msg` is counted as.
    fn dsn_counted(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        failed: &RecipientResult,
    ) -> (Dims, BounceInfo) {
        let dims = Dims {
            sending_domain: self.sending_domain(&msg.mail_from),
            email_type: msg.stream.as_str().to_string(),
            sending_ip: self.inner.stats.sending_ip_of(msg.id, idx),
            provider: failed.provider.as_label().to_string(),
        };
        let b = BounceInfo {
            category: failed.category.unwrap_or(Category::RecipientError),
            reply_code: failed.reply_code.map(|c| c.to_string()).unwrap_or_default(),
            status: failed.status.clone().unwrap_or_default(),
            permanent: failed.kind != Some(bounce::DeliveryKind::Transient),
        };
        (dims, b)
    }

    /// The metrics of a DSN (with or without a valid token): one bounce sample per
    /// classified recipient, labelled by the first original message its tokens name.
    pub(super) fn count_returned(&self, r: &Returned<'_>) {
        let report = r.report;
        if !report.is_bounce {
            tracing::info!(kind = ?report.kind, feedback_type = ?report.feedback_type, "message at the bounce address is no bounce");
            return;
        }
        let sending_domain = r
            .origins
            .iter()
            .find_map(super::Origin::mail_from)
            .map_or_else(|| UNKNOWN_DOMAIN.to_owned(), |f| self.sending_domain(f));
        let first = r.origins.first();
        let email_type = first
            .and_then(|o| o.message.as_ref())
            .map_or("transactional", |m| m.stream.as_str());
        let sending_ip = first.map_or_else(String::new, |o| {
            self.inner.stats.sending_ip_of(o.id, o.rcpt)
        });
        for f in report.recipients.iter() {
            let Some(category) = f.category else {
                continue;
            };
            let dims = Dims {
                sending_domain: sending_domain.clone(),
                email_type: email_type.to_owned(),
                sending_ip: sending_ip.clone(),
                provider: f.provider.as_label().to_owned(),
            };
            let b = BounceInfo {
                category,
                reply_code: String::new(),
                status: String::new(),
                permanent: f.kind.unwrap_or(DeliveryKind::Permanent) == DeliveryKind::Permanent,
            };
            self.count_bounce_metrics(&dims, &b);
        }
    }

    /// One final send of `sending_domain` (a label: `other` is not tracked).
    async fn count_send(&self, sending_domain: &str, permanent_bounce: bool) {
        if sending_domain != "other" {
            self.inner
                .suspensions
                .record(sending_domain, permanent_bounce)
                .await;
        }
    }

    fn count_bounce_metrics(&self, dims: &Dims, b: &BounceInfo) {
        self.inner.metrics.bounce(&BounceLabels {
            category: b.category.as_str(),
            provider: &dims.provider,
            sending_domain: &dims.sending_domain,
            email_type: &dims.email_type,
            sending_ip: &dims.sending_ip,
            kind: if b.permanent {
                "permanent"
            } else {
                "transient"
            },
        });
        if b.category == Category::Blocked
            && dims.provider != crate::providers::Provider::Other.as_label()
        {
            self.inner.metrics.esp_block(&dims.provider);
        }
    }

    /// The `sending_domain` label of a sender: its domain when enrolled or served, else `other`.
    pub(super) fn sending_domain(&self, mail_from: &str) -> String {
        let d = domain_of(mail_from);
        if self.inner.domains.contains(&d) {
            d
        } else {
            "other".to_string()
        }
    }

    fn dims(&self, msg: &QueuedMessage, rcpt: &str, email_type: &str, reply: &str) -> Dims {
        Dims {
            sending_domain: self.sending_domain(&msg.mail_from),
            email_type: email_type.to_string(),
            sending_ip: String::new(),
            provider: crate::providers::detect_provider(Some(rcpt), &[], reply)
                .as_label()
                .to_string(),
        }
    }
}

/// The index of the attempt's recipient in its message (the `i/` record's key).
fn rcpt_index(a: &Attempt<'_>) -> Option<u16> {
    let idx = a
        .msg
        .recipients
        .iter()
        .position(|r| r.address == a.rcpt.address)?;
    u16::try_from(idx).ok()
}

/// A synchronous refusal (5xx) or an expiry → what it is counted as: the category delivery
/// classified the refusal under (an expiry is a recipient error), the codes the reply text
/// carries. A relayed refusal always has a category; one without (none reaches here) counts
/// as a recipient error, as a DSN without one does.
fn bounce_info(reply: &str, category: Option<Category>, expired: bool) -> BounceInfo {
    let code = bounce::find_reply_code(reply);
    let status = bounce::find_status(reply).map(str::to_string);
    let category = if expired {
        Category::RecipientError
    } else {
        category.unwrap_or(Category::RecipientError)
    };
    BounceInfo {
        category,
        reply_code: code.map(|c| c.to_string()).unwrap_or_default(),
        status: status.unwrap_or_else(|| {
            if expired {
                "4.4.7".into()
            } else {
                String::new()
            }
        }),
        // An expiry is final: the message is given up on, like a 5xx.
        permanent: true,
    }
}

/// Lower-cased domain of an address; `unknown` for the null sender or junk. The sending
/// domains are the enrolled ones, so the label set stays small.
fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_refusals_count_under_the_category_delivery_gave_and_expiry_as_recipient_error() {
        let reply = "550 5.1.1 <x@gmail.com>: user unknown";
        // The reply says "user unknown"; the record's category is what counts.
        let b = bounce_info(reply, Some(Category::Blocked), false);
        assert_eq!(b.category, Category::Blocked);
        assert_eq!((b.reply_code.as_str(), b.status.as_str()), ("550", "5.1.1"));
        assert!(b.permanent);
        let e = bounce_info(
            "421 4.4.2 connection timed out",
            Some(Category::Blocked),
            true,
        );
        assert_eq!(e.category, Category::RecipientError);
        assert!(e.permanent);
        assert_eq!(e.status, "4.4.2");
        let e = bounce_info("timed out", None, true);
        assert_eq!((e.reply_code.as_str(), e.status.as_str()), ("", "4.4.7"));
        assert_eq!(domain_of("Bob@Example.TEST"), "example.test");
        assert_eq!(domain_of(""), "unknown");
    }
}
