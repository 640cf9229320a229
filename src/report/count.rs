//! Counting: where an outcome becomes Prometheus metrics, hourly statistics, the sent
//! records (`i/` sending IP, `m/` Message-ID), a suppression and a bounce-rate sample.
//!
//! Split from the observer's entry points ([`super`]) because what is counted, and under
//! which labels (the `sending_domain`, provider and category rules), is one concern shared
//! by the attempt and the DSN paths, while turning an outcome into an ERP event is another
//! ([`super::event`]).

use crate::bounce::{self, Category, RecipientResult};
use crate::envelope::QueueId;
use crate::events::Kind;
use crate::metrics::BounceLabels;
use crate::queue::QueuedMessage;
use crate::stats::{BounceInfo, Dims};

use super::{Attempted, Observer};

impl Observer {
    /// The relayed side of a reported attempt: a delivery is counted and its Message-ID and
    /// sending IP remembered; a bounce or an expiry is classified and counted, and fed to
    /// the suspension and (a bounce) the suppression list. Returns that classification.
    pub(super) fn count_outbound(&self, a: &Attempted) -> Option<BounceInfo> {
        let now = self.inner.clock.now_ms();
        let mut dims = self.dims(a.msg, &a.rcpt.address, a.info.email_type, &a.reply);
        if let Some(ip) = a.tried.sending_ip {
            dims.sending_ip = ip.to_string();
        }
        match a.kind {
            Kind::Delivered => {
                self.count_delivered(a, &dims, now);
                None
            }
            Kind::Bounced | Kind::Expired => {
                let b = classify(&a.reply, a.category, a.kind == Kind::Expired);
                self.count_bounce(now, &dims, &b, true);
                if a.kind == Kind::Bounced {
                    self.suppress(&a.rcpt.address, &b, &a.reply, a.msg.id);
                }
                self.count_send(&dims.sending_domain, a.kind == Kind::Bounced && b.permanent);
                Some(b)
            }
            Kind::Deferred | Kind::Suspended | Kind::Complained => None,
        }
    }

    /// A relayed recipient delivered: remembers its Message-ID and sending IP (for reports
    /// that come back later), then counts it.
    fn count_delivered(&self, a: &Attempted, dims: &Dims, now: u64) {
        let stats = &self.inner.stats;
        if !a.info.message_id.is_empty() {
            stats.remember_message_id(&a.info.message_id, a.msg.id);
        }
        if let Some(ip) = a.tried.sending_ip {
            let idx = a
                .msg
                .recipients
                .iter()
                .position(|r| r.address == a.rcpt.address);
            if let Some(idx) = idx.and_then(|i| u16::try_from(i).ok()) {
                stats.remember_sending_ip(a.msg.id, idx, &ip.to_string());
            }
        }
        self.inner.metrics.delivered(
            &dims.sending_domain,
            &dims.provider,
            &dims.email_type,
            &dims.sending_ip,
        );
        stats.delivered(now, dims);
        self.count_send(&dims.sending_domain, false);
    }

    /// A DSN made recipient `idx` of `msg` `bounced`: counted in the statistics (the intake
    /// counts the metrics itself) and, when permanent, in the suspension. Returns the
    /// category the bounce is counted under.
    pub(super) fn count_dsn(
        &self,
        msg: &QueuedMessage,
        idx: u16,
        failed: &RecipientResult,
    ) -> Category {
        let email_type = msg.stream.as_str();
        let dims = Dims {
            sending_domain: self.sending_domain(&msg.mail_from),
            email_type: email_type.to_string(),
            sending_ip: self.inner.stats.sending_ip_of(msg.id, idx),
            provider: failed.provider.as_label().to_string(),
        };
        let category = failed.category.unwrap_or(Category::RecipientError);
        let b = BounceInfo {
            category,
            reply_code: failed.reply_code.map(|c| c.to_string()).unwrap_or_default(),
            status: failed.status.clone().unwrap_or_default(),
            permanent: failed.kind != Some(bounce::DeliveryKind::Transient),
        };
        let now = self.inner.clock.now_ms();
        // Metrics for DSNs are counted by the intake itself (also for DSNs without a token).
        self.count_bounce(now, &dims, &b, false);
        if b.permanent {
            self.count_send(&dims.sending_domain, true);
        }
        category
    }

    /// One final send of `sending_domain` (a label: `other` is not tracked).
    fn count_send(&self, sending_domain: &str, permanent_bounce: bool) {
        if sending_domain != "other" {
            self.inner
                .suspensions
                .record(sending_domain, permanent_bounce);
        }
    }

    /// Metrics first, statistics last (tests wait for the statistics to see both).
    /// A synchronous hard bounce puts the address on the suppression list (off the async
    /// threads: the store syncs each write).
    fn suppress(&self, address: &str, b: &BounceInfo, reply: &str, id: QueueId) {
        if !crate::suppression::suppresses_category(b.category, b.permanent) {
            return;
        }
        let list = self.inner.suppressions.clone();
        let (address, reason) = (address.to_string(), b.category.as_str());
        let detail = format!("{} (message {id})", reply.trim());
        let task = move || {
            let r = list.add_blocking(
                &address,
                reason,
                crate::suppression::Source::Bounce,
                Some(&detail),
            );
            match r {
                Ok((added, _)) => {
                    tracing::info!(rcpt = %address, reason, ?added, "address suppressed")
                }
                Err(e) => {
                    tracing::warn!(rcpt = %address, error = %e, "cannot record the suppression")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(task)),
            Err(_) => task(),
        }
    }

    fn count_bounce(&self, now: u64, dims: &Dims, b: &BounceInfo, metrics: bool) {
        if metrics {
            self.count_bounce_metrics(dims, b);
        }
        self.inner.stats.bounced(now, dims, b);
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
    pub fn sending_domain(&self, mail_from: &str) -> String {
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

/// A synchronous refusal (5xx) or an expiry → category, codes, permanence.
fn classify(reply: &str, category: Option<Category>, expired: bool) -> BounceInfo {
    let code = bounce::find_reply_code(reply);
    let status = bounce::find_status(reply).map(str::to_string);
    let c = bounce::classify_reply(code, status.as_deref(), reply);
    let category = if expired {
        Category::RecipientError
    } else {
        category.unwrap_or(c.category)
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
    fn synchronous_refusals_and_expiry_classify() {
        let b = classify("550 5.1.1 <x@gmail.com>: user unknown", None, false);
        assert_eq!(b.category, Category::InvalidAddress);
        assert_eq!((b.reply_code.as_str(), b.status.as_str()), ("550", "5.1.1"));
        let e = classify("421 4.4.2 connection timed out", None, true);
        assert_eq!(e.category, Category::RecipientError);
        assert!(e.permanent);
        assert_eq!(domain_of("Bob@Example.TEST"), "example.test");
        assert_eq!(domain_of(""), "unknown");
    }
}
