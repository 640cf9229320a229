//! Suppression: the one place an outcome puts an address on the
//! [`SuppressionList`](crate::suppression::SuppressionList). The rules themselves are pure
//! functions of [`suppression`](crate::suppression) ([`suppresses_bounce`],
//! [`complaint_suppresses`]); this applies them to both sources of hard bounces — a
//! synchronous refusal of a relayed attempt and a DSN — and to complaints.
//!
//! Only a DSN or a complaint whose token is valid suppresses (an [`Origin`] exists only for
//! one): without the token nothing proves the mail was ours, and a forged DSN must not be
//! able to stop mail to an arbitrary address.

use crate::bounce::{Category, ReportKind};
use crate::envelope::QueueId;
use crate::suppression::{Source, complaint_suppresses, suppresses_bounce};

use super::{Observer, Origin, Returned};

impl Observer {
    /// A hard permanent bounce — a relayed attempt refused, or a DSN — suppresses the
    /// recipient `address` of message `id` (`None`: the message is gone, nothing to do).
    /// `certain`: the classification rested on words or a one-meaning status code.
    pub(super) async fn suppress_bounce(
        &self,
        address: Option<&str>,
        (category, permanent, certain): (Category, bool, bool),
        reply: &str,
        id: QueueId,
    ) {
        if !suppresses_bounce(category, permanent, certain) {
            return;
        }
        let Some(address) = address else {
            tracing::info!(queue_id = %id, "token names no stored recipient; nothing to suppress");
            return;
        };
        let detail = format!("{} (message {id})", reply.trim());
        self.suppress(address, category.as_str(), Source::Bounce, detail)
            .await;
    }

    /// What a returned report makes of `origin`'s address: a hard permanent bounce or a
    /// complaint (of a type that means "no more") suppresses it, whether or not this DSN was
    /// the one that made the recipient `bounced`.
    pub(super) async fn suppress_returned(&self, r: &Returned<'_>, origin: &Origin) {
        let report = r.report;
        if report.kind != ReportKind::Complaint {
            if let Some((f, category)) = r
                .failure
                .as_ref()
                .and_then(|f| Some((f, f.result.category?)))
            {
                let verdict = (category, !f.transient(), f.result.certain);
                self.suppress_bounce(origin.address(), verdict, &f.reply, origin.id)
                    .await;
            }
            return;
        }
        let feedback_type = report.feedback_type.as_deref();
        if !complaint_suppresses(feedback_type) {
            return;
        }
        let Some(address) = origin.address() else {
            tracing::info!(queue_id = %origin.id, "token names no stored recipient; nothing to suppress");
            return;
        };
        let reason = format!("complaint: {}", feedback_type.unwrap_or("abuse"));
        let detail = format!("message {}", origin.id);
        self.suppress(address, &reason, Source::Complaint, detail)
            .await;
    }

    async fn suppress(&self, address: &str, reason: &str, source: Source, detail: String) {
        let r = self
            .inner
            .suppressions
            .add(address, reason, source, Some(&detail))
            .await;
        match r {
            Ok((added, _)) => {
                tracing::info!(rcpt = %address, reason, source = source.as_str(), ?added, "address suppressed")
            }
            Err(e) => {
                tracing::warn!(rcpt = %address, error = %e, "cannot record the suppression")
            }
        }
    }
}
