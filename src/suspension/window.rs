//! A sending domain's window of recent sends, as this node keeps it: in memory, and in the
//! statistics store under `w/<domain>` (the compact encoding below). With a cluster whose
//! Redis answers, the cluster-wide window ([`super::shared_window`]) judges instead; this
//! one is what the node falls back to while Redis is down.

use std::collections::VecDeque;

use crate::config::SuspensionConfig;

/// Version byte of an encoded window.
const WINDOW_V1: u8 = 1;

/// The last `window` sends of one domain: `true` = permanent bounce.
#[derive(Default)]
pub(super) struct Window {
    pub(super) outcomes: VecDeque<bool>,
    pub(super) bounces: usize,
}

/// Whether `bounces` permanent bounces in `sends` sends trip a suspension under `cfg`.
pub(super) fn trips(cfg: &SuspensionConfig, bounces: usize, sends: usize) -> bool {
    sends >= cfg.min_sends && (bounces as f64) * 100.0 > cfg.threshold_percent * sends as f64
}

impl Window {
    /// Adds the newest send and forgets the oldest beyond `cap`; (bounces, sends) after.
    pub(super) fn push(&mut self, bounced: bool, cap: usize) -> (usize, usize) {
        self.outcomes.push_back(bounced);
        self.bounces += usize::from(bounced);
        while self.outcomes.len() > cap {
            if self.outcomes.pop_front() == Some(true) {
                self.bounces -= 1;
            }
        }
        (self.bounces, self.outcomes.len())
    }

    /// `[1][n u32 LE][n bits, oldest first, LSB first]`.
    pub(super) fn encode(&self) -> Vec<u8> {
        let n = self.outcomes.len();
        let mut v = Vec::with_capacity(5 + n.div_ceil(8));
        v.push(WINDOW_V1);
        v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        v.resize(5 + n.div_ceil(8), 0);
        for (i, bounced) in self.outcomes.iter().enumerate() {
            if *bounced {
                v[5 + i / 8] |= 1 << (i % 8);
            }
        }
        v
    }

    /// The inverse of [`Window::encode`], keeping the newest `cap` sends (the window may
    /// have shrunk since it was written); `None` for a value that is not a window.
    pub(super) fn decode(v: &[u8], cap: usize) -> Option<Window> {
        let (&version, rest) = v.split_first()?;
        if version != WINDOW_V1 || rest.len() < 4 {
            return None;
        }
        let n = usize::try_from(u32::from_le_bytes(rest[..4].try_into().ok()?)).ok()?;
        let bits = &rest[4..];
        if bits.len() != n.div_ceil(8) {
            return None;
        }
        let mut w = Window::default();
        for i in n.saturating_sub(cap)..n {
            let bounced = bits[i / 8] & (1 << (i % 8)) != 0;
            w.outcomes.push_back(bounced);
            w.bounces += usize::from(bounced);
        }
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
        }
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
