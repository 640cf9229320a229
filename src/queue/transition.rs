//! Recipient state transitions, as pure functions on a [`Recipient`]. The store diffs the
//! recipient before and after to update its indexes, so these only decide the new state.
//!
//! ```text
//!            enqueue
//!               │
//!               ▼        Deferred (before expiry)
//!  ┌──────► queued ───────────────► deferred ──┐ (again)
//!  │            │ │                     │  ▲───┘
//!  │ retry      │ └──── Sent/Bounced ───┼──────► sent | bounced
//!  │            │                       │ Deferred past expiry
//!  │            │ cancel                └──────► expired
//!  │            ▼                      cancel ─► cancelled
//!  └── deferred | bounced | expired
//!
//!  queued | deferred ── admin_hold ──► held ── release ──► queued (due now)
//!  sent (to an ERP route) ── redeliver ──► queued (due now)
//! ```
//!
//! A warming [`Hold`] moves like `Deferred` (and past expiry to `expired`), but it was no
//! attempt: the attempt count stays and its window, not the backoff, sets the next attempt.

use super::{Hold, Outcome};
use crate::bounce::Category;
use crate::config::QueueConfig;
use crate::envelope::Destination;

use super::schedule::{self, Next};
use super::{RcptState, Recipient};

/// `last_reply` of a `bounce+TOKEN` recipient: nothing is delivered, the bounce stage reads
/// it from the store (see [`Queue::pending_bounces`](super::Queue::pending_bounces)).
pub const STORED_FOR_BOUNCE: &str = "stored for bounce processing";

/// When the attempt happened and what the retry policy says.
pub struct Attempt<'a> {
    pub cfg: &'a QueueConfig,
    pub received_ms: u64,
    pub now_ms: u64,
    /// In `[-1, 1]`, see [`schedule::backoff`].
    pub jitter: f64,
}

/// Records one attempt's outcome. Returns false (and changes nothing) when the recipient is
/// no longer pending — it was cancelled or already finished while the attempt ran.
pub fn record(r: &mut Recipient, outcome: &Outcome, at: &Attempt<'_>) -> bool {
    if !r.state.is_pending() {
        return false;
    }
    r.attempts = r.attempts.saturating_add(1);
    r.updated_ms = at.now_ms;
    match outcome {
        Outcome::Sent { reply } => {
            r.state = RcptState::Sent;
            r.last_reply = Some(reply.clone());
        }
        Outcome::Bounced { category, reply } => {
            r.state = RcptState::Bounced;
            r.category = category.map(|c| c.as_str().to_string());
            r.last_reply = Some(reply.clone());
        }
        Outcome::Deferred { reason } => {
            r.last_reply = Some(reason.clone());
            match schedule::after_failure(at.cfg, at.received_ms, at.now_ms, r.attempts, at.jitter)
            {
                Next::Expire => r.state = RcptState::Expired,
                Next::RetryAt(t) => {
                    r.state = RcptState::Deferred;
                    r.next_attempt_ms = t;
                }
            }
        }
    }
    true
}

/// A warming cap or provider rate holds the recipient (no attempt was made): `deferred`
/// with the hold's reason until its window opens, the attempt count unchanged, never past
/// expiry; already past expiry it expires. Returns false (and changes nothing) when the
/// recipient is no longer pending.
pub fn hold(r: &mut Recipient, hold: &Hold, at: &Attempt<'_>) -> bool {
    if !r.state.is_pending() {
        return false;
    }
    r.updated_ms = at.now_ms;
    r.last_reply = Some(hold.reason.clone());
    let expiry = schedule::expires_at(at.cfg, at.received_ms);
    if at.now_ms >= expiry {
        r.state = RcptState::Expired;
    } else {
        r.state = RcptState::Deferred;
        // Strictly later than now, so a hold can never spin on its own schedule entry.
        r.next_attempt_ms = hold.retry_at.max(at.now_ms + 1).min(expiry);
    }
    true
}

/// Admin retry: `deferred`, `bounced` or `expired` → `queued`, due now. Attempts are kept.
/// An expired recipient gets one more attempt: if it fails it expires again, as its message
/// is still past `expire_after`.
pub fn retry(r: &mut Recipient, now_ms: u64) -> bool {
    if !matches!(
        r.state,
        RcptState::Deferred | RcptState::Bounced | RcptState::Expired
    ) {
        return false;
    }
    r.state = RcptState::Queued;
    r.next_attempt_ms = now_ms;
    r.category = None;
    r.updated_ms = now_ms;
    true
}

/// Admin cancel: a pending or held recipient → `cancelled`.
pub fn cancel(r: &mut Recipient, now_ms: u64) -> bool {
    if !(r.state.is_pending() || r.state == RcptState::Held) {
        return false;
    }
    r.state = RcptState::Cancelled;
    r.updated_ms = now_ms;
    true
}

/// Admin hold (`postsuper -h`): a pending recipient → `held`, out of the schedule. Its
/// attempts and last reply stay; an attempt already under way finds it no longer pending
/// and its outcome is dropped (as for cancel), so it is delivered again after release.
pub fn admin_hold(r: &mut Recipient, now_ms: u64) -> bool {
    if !r.state.is_pending() {
        return false;
    }
    r.state = RcptState::Held;
    r.updated_ms = now_ms;
    true
}

/// Admin release (`postsuper -H`): `held` → `queued`, due now. Expiry still counts from
/// reception, so a message held past `expire_after` gets one attempt, as after a retry.
pub fn release(r: &mut Recipient, now_ms: u64) -> bool {
    if r.state != RcptState::Held {
        return false;
    }
    r.state = RcptState::Queued;
    r.next_attempt_ms = now_ms;
    r.updated_ms = now_ms;
    true
}

/// Admin redeliver: a recipient already handed to an ERP route (`sent`) → `queued`, due
/// now — Odoo's "fetch again" after the ERP processed a message wrongly. Only `Route`
/// recipients: re-sending relayed mail to the Internet is not a redelivery to the ERP, and
/// a `bounce+TOKEN` copy was never delivered anywhere.
pub fn redeliver(r: &mut Recipient, now_ms: u64) -> bool {
    if r.state != RcptState::Sent || !matches!(r.dest, Destination::Route { .. }) {
        return false;
    }
    r.state = RcptState::Queued;
    r.next_attempt_ms = now_ms;
    r.updated_ms = now_ms;
    true
}

/// An asynchronous bounce (DSN) for this recipient: `sent` or still pending → `bounced`.
pub fn bounce_reported(
    r: &mut Recipient,
    category: Option<Category>,
    reply: String,
    now_ms: u64,
) -> bool {
    if !(r.state.is_pending() || r.state == RcptState::Sent) {
        return false;
    }
    r.state = RcptState::Bounced;
    r.category = category.map(|c| c.as_str().to_string());
    r.last_reply = Some(reply);
    r.updated_ms = now_ms;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn rcpt(state: RcptState) -> Recipient {
        Recipient {
            address: "sales@example.test".into(),
            dest: Destination::Bounce {
                token: String::new(),
            },
            state,
            attempts: 0,
            next_attempt_ms: 0,
            last_reply: None,
            category: None,
            updated_ms: 0,
            esmtp: Default::default(),
        }
    }

    fn cfg() -> QueueConfig {
        QueueConfig {
            retry_initial: HumanDuration::secs(60),
            retry_max: HumanDuration::secs(3600),
            expire_after: HumanDuration::secs(86_400),
            concurrency: 1,
            ..QueueConfig::default()
        }
    }

    fn at(cfg: &QueueConfig, now_ms: u64) -> Attempt<'_> {
        Attempt {
            cfg,
            received_ms: 0,
            now_ms,
            jitter: 0.0,
        }
    }

    #[test]
    fn deferral_schedules_the_backoff_and_counts_the_attempt() {
        let c = cfg();
        let mut r = rcpt(RcptState::Queued);
        assert!(record(
            &mut r,
            &Outcome::deferred("HTTP 503"),
            &at(&c, 1_000)
        ));
        assert_eq!(
            (r.state, r.attempts, r.next_attempt_ms),
            (RcptState::Deferred, 1, 61_000)
        );
        assert_eq!(r.last_reply.as_deref(), Some("HTTP 503"));
        assert!(record(
            &mut r,
            &Outcome::deferred("HTTP 503"),
            &at(&c, 61_000)
        ));
        assert_eq!((r.attempts, r.next_attempt_ms), (2, 181_000));
    }

    #[test]
    fn deferral_past_expiry_expires() {
        let c = cfg();
        let mut r = rcpt(RcptState::Deferred);
        assert!(record(
            &mut r,
            &Outcome::deferred("down"),
            &at(&c, 86_400_000)
        ));
        assert_eq!(r.state, RcptState::Expired);
    }

    #[test]
    fn a_hold_waits_for_its_window_without_counting_an_attempt() {
        let c = cfg();
        let mut r = rcpt(RcptState::Queued);
        let h = Hold {
            reason: "provider rate: 2 of 2".into(),
            retry_at: 5_000,
        };
        assert!(hold(&mut r, &h, &at(&c, 1_000)));
        assert_eq!(
            (r.state, r.attempts, r.next_attempt_ms),
            (RcptState::Deferred, 0, 5_000)
        );
        assert_eq!(r.last_reply.as_deref(), Some("provider rate: 2 of 2"));
        // A later 4xx backs off from the first step: the hold did not count.
        assert!(record(&mut r, &Outcome::deferred("451"), &at(&c, 5_000)));
        assert_eq!((r.attempts, r.next_attempt_ms), (1, 65_000));
        // Never past expiry, and expired once there.
        let late = Hold {
            reason: "warming cap".into(),
            retry_at: 90_000_000,
        };
        assert!(hold(&mut r, &late, &at(&c, 70_000)));
        assert_eq!(r.next_attempt_ms, 86_400_000);
        assert!(hold(&mut r, &late, &at(&c, 86_400_000)));
        assert_eq!((r.state, r.attempts), (RcptState::Expired, 1));
        assert!(!hold(&mut r, &late, &at(&c, 86_400_001)));
    }

    #[test]
    fn bounce_keeps_category_and_reply() {
        let c = cfg();
        let mut r = rcpt(RcptState::Queued);
        let o = Outcome::Bounced {
            category: Some(Category::Rejection),
            reply: "HTTP 404 Not Found".into(),
        };
        assert!(record(&mut r, &o, &at(&c, 1)));
        assert_eq!(r.state, RcptState::Bounced);
        assert_eq!(r.category.as_deref(), Some("Rejection"));
    }

    #[test]
    fn outcome_for_a_cancelled_recipient_is_ignored() {
        let c = cfg();
        let mut r = rcpt(RcptState::Cancelled);
        let sent = Outcome::Sent {
            reply: "HTTP 200 OK".into(),
        };
        assert!(!record(&mut r, &sent, &at(&c, 1)));
        assert_eq!((r.state, r.attempts), (RcptState::Cancelled, 0));
    }

    #[test]
    fn retry_requeues_only_failed_or_waiting_recipients() {
        for (st, ok) in [
            (RcptState::Queued, false),
            (RcptState::Deferred, true),
            (RcptState::Sent, false),
            (RcptState::Bounced, true),
            (RcptState::Expired, true),
            (RcptState::Cancelled, false),
        ] {
            let mut r = rcpt(st);
            assert_eq!(retry(&mut r, 9), ok, "{st:?}");
            if ok {
                assert_eq!((r.state, r.next_attempt_ms), (RcptState::Queued, 9));
            }
        }
    }

    #[test]
    fn hold_takes_pending_recipients_and_release_makes_them_due_now() {
        for (st, ok) in [
            (RcptState::Queued, true),
            (RcptState::Deferred, true),
            (RcptState::Sent, false),
            (RcptState::Bounced, false),
            (RcptState::Cancelled, false),
            (RcptState::Held, false),
        ] {
            let mut r = rcpt(st);
            assert_eq!(admin_hold(&mut r, 5), ok, "{st:?}");
        }
        let mut r = rcpt(RcptState::Deferred);
        r.next_attempt_ms = 99;
        assert!(admin_hold(&mut r, 5) && !r.state.is_pending() && !r.state.is_final());
        assert!(!retry(&mut r, 6), "retry does not release");
        assert!(release(&mut r, 7));
        assert_eq!((r.state, r.next_attempt_ms), (RcptState::Queued, 7));
        assert!(!release(&mut r, 8));
        let mut held = rcpt(RcptState::Held);
        assert!(cancel(&mut held, 9));
    }

    #[test]
    fn redeliver_requeues_only_recipients_sent_to_an_erp_route() {
        let route = Destination::Route {
            route: "crm".into(),
            alias: "sales@example.test".into(),
            thread: None,
            detail: None,
        };
        let mut r = Recipient {
            dest: route.clone(),
            ..rcpt(RcptState::Sent)
        };
        assert!(redeliver(&mut r, 4));
        assert_eq!((r.state, r.next_attempt_ms), (RcptState::Queued, 4));
        assert!(!redeliver(&mut r, 5), "already pending");
        let mut bounced = Recipient {
            dest: route,
            ..rcpt(RcptState::Bounced)
        };
        assert!(!redeliver(&mut bounced, 4));
        let mut copy = rcpt(RcptState::Sent); // a bounce+TOKEN copy
        assert!(!redeliver(&mut copy, 4));
    }

    #[test]
    fn cancel_applies_to_pending_recipients_only() {
        let mut q = rcpt(RcptState::Deferred);
        assert!(cancel(&mut q, 1));
        assert_eq!(q.state, RcptState::Cancelled);
        let mut s = rcpt(RcptState::Sent);
        assert!(!cancel(&mut s, 1));
    }
}
