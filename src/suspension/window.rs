//! A sending domain's window of recent sends, as this node keeps it: in memory, and in the
//! statistics store under `w/<domain>` (the compact encoding below). With a cluster whose
//! Redis answers, the cluster-wide window ([`super::shared_window`]) judges instead; this
//! one is what the node falls back to while Redis is down.

use std::collections::VecDeque;

use crate::config::SuspensionConfig;

/// Version byte of an encoded window: 1 = sends only, 2 = sends and complaints.
const WINDOW_V1: u8 = 1;
const WINDOW_V2: u8 = 2;

/// The last `window` sends of one domain: `true` = permanent bounce; and the spam
/// complaints received over the same span (issue 17 item 7).
///
/// A complaint arrives long after its send and seldom names it, so it is not marked on a
/// send: it is kept with the send count at its arrival (`sends_total`) and leaves the
/// window once `window` more sends have been recorded — the same span the bounce rate is
/// judged over, so both rates read "per the last `window` sends".
#[derive(Default)]
pub(super) struct Window {
    pub(super) outcomes: VecDeque<bool>,
    pub(super) bounces: usize,
    /// Sends recorded since this window began (not trimmed).
    sends_total: u64,
    /// `sends_total` at each complaint still in the window, oldest first.
    complaints: VecDeque<u64>,
}

/// Whether `bounces` permanent bounces in `sends` sends trip a suspension under `cfg`.
pub(super) fn trips(cfg: &SuspensionConfig, bounces: usize, sends: usize) -> bool {
    sends >= cfg.min_sends && (bounces as f64) * 100.0 > cfg.threshold_percent * sends as f64
}

/// Whether `complaints` over the last `sends` sends trip a suspension under `cfg`: the same
/// minimum volume as the bounce rate, `complaint_threshold_percent` as the line.
pub(super) fn complaints_trip(cfg: &SuspensionConfig, complaints: usize, sends: usize) -> bool {
    sends >= cfg.min_sends
        && (complaints as f64) * 100.0 > cfg.complaint_threshold_percent * sends as f64
}

impl Window {
    /// Adds the newest send and forgets the oldest beyond `cap`; (bounces, sends) after.
    pub(super) fn push(&mut self, bounced: bool, cap: usize) -> (usize, usize) {
        self.outcomes.push_back(bounced);
        self.bounces += usize::from(bounced);
        self.sends_total += 1;
        while self.outcomes.len() > cap {
            if self.outcomes.pop_front() == Some(true) {
                self.bounces -= 1;
            }
        }
        self.trim_complaints(cap);
        (self.bounces, self.outcomes.len())
    }

    /// Adds a complaint; (complaints, sends) in the window after.
    pub(super) fn complain(&mut self, cap: usize) -> (usize, usize) {
        self.complaints.push_back(self.sends_total);
        self.trim_complaints(cap);
        (self.complaints.len(), self.outcomes.len())
    }

    /// (complaints, sends) in the window now.
    pub(super) fn complaint_counts(&self) -> (usize, usize) {
        (self.complaints.len(), self.outcomes.len())
    }

    /// Forgets complaints `cap` or more sends old.
    fn trim_complaints(&mut self, cap: usize) {
        let now = self.sends_total;
        while self
            .complaints
            .front()
            .is_some_and(|at| now - at >= cap as u64)
        {
            self.complaints.pop_front();
        }
    }

    /// `[1][n u32 LE][n bits, oldest first, LSB first]`; with complaints, version 2 and
    /// after the bits `[sends_total u64 LE][k u32 LE][k × sends_total at the complaint]`.
    pub(super) fn encode(&self) -> Vec<u8> {
        let n = self.outcomes.len();
        let mut v = Vec::with_capacity(5 + n.div_ceil(8));
        let version = if self.complaints.is_empty() {
            WINDOW_V1
        } else {
            WINDOW_V2
        };
        v.push(version);
        v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        v.resize(5 + n.div_ceil(8), 0);
        for (i, bounced) in self.outcomes.iter().enumerate() {
            if *bounced {
                v[5 + i / 8] |= 1 << (i % 8);
            }
        }
        if version == WINDOW_V2 {
            v.extend_from_slice(&self.sends_total.to_le_bytes());
            let k = u32::try_from(self.complaints.len()).unwrap_or(u32::MAX);
            v.extend_from_slice(&k.to_le_bytes());
            for at in &self.complaints {
                v.extend_from_slice(&at.to_le_bytes());
            }
        }
        v
    }

    /// The inverse of [`Window::encode`], keeping the newest `cap` sends (the window may
    /// have shrunk since it was written); `None` for a value that is not a window.
    pub(super) fn decode(v: &[u8], cap: usize) -> Option<Window> {
        let (&version, rest) = v.split_first()?;
        if !(version == WINDOW_V1 || version == WINDOW_V2) || rest.len() < 4 {
            return None;
        }
        let n = usize::try_from(u32::from_le_bytes(rest[..4].try_into().ok()?)).ok()?;
        let bits = rest.get(4..4 + n.div_ceil(8))?;
        let trailer = &rest[4 + bits.len()..];
        let mut w = Window::default();
        if version == WINDOW_V1 {
            if !trailer.is_empty() {
                return None;
            }
            w.sends_total = n as u64;
        } else {
            let u64_at = |i: usize| -> Option<u64> {
                Some(u64::from_le_bytes(trailer.get(i..i + 8)?.try_into().ok()?))
            };
            w.sends_total = u64_at(0)?;
            let k = u32::from_le_bytes(trailer.get(8..12)?.try_into().ok()?) as usize;
            if trailer.len() != 12 + 8 * k {
                return None;
            }
            w.complaints = (0..k).map(|j| u64_at(12 + 8 * j)).collect::<Option<_>>()?;
        }
        for i in n.saturating_sub(cap)..n {
            let bounced = bits[i / 8] & (1 << (i % 8)) != 0;
            w.outcomes.push_back(bounced);
            w.bounces += usize::from(bounced);
        }
        w.trim_complaints(cap);
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(outcomes: &[bool]) -> Window {
        Window {
            outcomes: outcomes.iter().copied().collect(),
            bounces: outcomes.iter().filter(|b| **b).count(),
            sends_total: outcomes.len() as u64,
            complaints: VecDeque::new(),
        }
    }

    #[test]
    fn complaints_leave_the_window_with_the_sends_they_came_among() {
        let mut w = Window::default();
        for _ in 0..4 {
            w.push(false, 4);
        }
        assert_eq!(w.complain(4), (1, 4));
        w.push(false, 4);
        assert_eq!(w.complain(4), (2, 4));
        // Survives the store, complaints and all.
        let mut back = Window::decode(&w.encode(), 4).expect("decode v2");
        assert_eq!(back.complaint_counts(), (2, 4));
        for _ in 0..3 {
            back.push(false, 4);
        }
        assert_eq!(back.complaint_counts(), (1, 4), "the first is 4 sends old");
        back.push(false, 4);
        assert_eq!(back.complaint_counts(), (0, 4));
        assert_eq!(back.encode()[0], WINDOW_V1, "nothing to keep but the sends");
        let cfg = SuspensionConfig {
            min_sends: 4,
            complaint_threshold_percent: 20.0,
            ..SuspensionConfig::default()
        };
        assert!(!complaints_trip(&cfg, 1, 3), "under the minimum volume");
        assert!(complaints_trip(&cfg, 1, 4), "25% > 20%");
        assert!(!complaints_trip(&cfg, 1, 5), "20% is not over 20%");
    }

    #[test]
    fn windows_encode_compactly_and_round_trip() {
        let outcomes: Vec<bool> = (0..500).map(|i| i % 7 == 3).collect();
        let w = window(&outcomes);
        let v = w.encode();
        assert_eq!(v.len(), 1 + 4 + 63);
        let back = Window::decode(&v, 500).expect("decode");
        assert_eq!(back.outcomes, w.outcomes);
        assert_eq!(back.bounces, w.bounces);
        let empty = Window::decode(&Window::default().encode(), 500).expect("empty");
        assert!(empty.outcomes.is_empty());
    }

    #[test]
    fn a_shrunk_window_keeps_the_newest_sends_and_junk_is_refused() {
        let w = window(&[true, true, false, false, true]);
        let back = Window::decode(&w.encode(), 3).expect("decode");
        assert_eq!(back.outcomes, [false, false, true]);
        assert_eq!(back.bounces, 1);
        assert!(Window::decode(b"", 10).is_none());
        assert!(Window::decode(&[2, 0, 0, 0, 0], 10).is_none());
        assert!(
            Window::decode(&[1, 9, 0, 0, 0, 0], 10).is_none(),
            "9 bits need 2 bytes"
        );
    }
}
