//! The complaint rate of a sending domain (issue 17 item 7): each spam complaint joins the
//! domain's window of recent sends ([`Window::complain`](super::window)), and more than
//! `suspension.complaint_threshold_percent` complaints over those sends (with the bounce
//! rate's `min_sends`) suspend the domain like a bounce storm does. Judged on this node's
//! window: complaints arrive at whichever node a feedback loop mails, so there is no
//! cluster-wide complaint window; the suspension itself is shared as any other.

use std::sync::PoisonError;

use super::{Suspension, Suspensions, window, window_key};

impl Suspensions {
    /// One spam complaint about mail of `domain` (an ARF feedback report that suppresses).
    /// May suspend the domain for its complaint rate. Blocking (store writes).
    pub fn record_complaint(&self, domain: &str) {
        if !self.cfg.enabled {
            return;
        }
        let domain = domain.to_ascii_lowercase();
        if self.is_suspended(&domain) {
            return;
        }
        let (complaints, sends) = {
            let mut windows = self
                .inner
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let w = windows.entry(domain.clone()).or_default();
            let counts = w.complain(self.cfg.window);
            self.write(&window_key(&domain), Some(&w.encode()));
            counts
        };
        if window::complaints_trip(&self.cfg, complaints, sends) {
            self.forget_window(&domain);
            let s = self.complaint_suspension(domain, complaints, sends);
            self.suspend(s);
        }
    }

    pub(super) fn complaint_suspension(
        &self,
        domain: String,
        complaints: usize,
        sends: usize,
    ) -> Suspension {
        let pct = complaints as f64 * 100.0 / sends as f64;
        Suspension {
            reason: format!(
                "spam complaint rate {pct:.2}% ({complaints} complaints over the last {sends} sends) over {}%",
                self.cfg.complaint_threshold_percent
            ),
            domain,
            bounces: 0,
            sends,
            complaints,
            created_ms: self.inner.clock.now_ms(),
        }
    }
}
