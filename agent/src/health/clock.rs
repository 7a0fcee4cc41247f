//! The node's clock against the controller's, NTP-style: each probe's
//! four timestamps give an offset and a round trip (RFC 5905 §8); of the
//! last [`SAMPLES`] the one with the shortest round trip is the estimate
//! (its offset is the least disturbed by queueing — NTP's clock filter,
//! simplified). Millisecond resolution, like the wire.
//!
//! Owned by the link (it sends the probes); published on the node for
//! health, `status`, the inventory and take manifests.

use serde::{Deserialize, Serialize};

/// Samples the filter keeps.
pub const SAMPLES: usize = 4;

/// One probe's four timestamps, ms since the epoch: t1 sent and t4
/// received on our clock, t2 received and t3 replied on the controller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub t1: u64,
    pub t2: u64,
    pub t3: u64,
    pub t4: u64,
}

/// The current estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// The controller's clock minus ours, ms (positive: we are behind).
    pub offset_ms: i64,
    /// The round trip of the sample it came from, ms.
    pub rtt_ms: u64,
    /// When it was measured (our clock, ms since the epoch).
    pub measured_at_ms: u64,
}

impl Probe {
    /// Offset and round trip; `None` for impossible timestamps (a reply
    /// before its probe on our clock).
    pub fn sample(&self) -> Option<(i64, u64)> {
        let (t1, t2, t3, t4) = (
            self.t1 as i128,
            self.t2 as i128,
            self.t3 as i128,
            self.t4 as i128,
        );
        if t4 < t1 || t3 < t2 {
            return None;
        }
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        let rtt = ((t4 - t1) - (t3 - t2)).max(0);
        Some((i64::try_from(offset).ok()?, u64::try_from(rtt).ok()?))
    }
}

#[derive(Debug, Default)]
pub struct Filter {
    recent: std::collections::VecDeque<Estimate>,
}

impl Filter {
    /// Takes a probe; returns the new estimate.
    pub fn add(&mut self, p: Probe) -> Option<Estimate> {
        let (offset_ms, rtt_ms) = p.sample()?;
        if self.recent.len() == SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(Estimate {
            offset_ms,
            rtt_ms,
            measured_at_ms: p.t4,
        });
        self.best()
    }

    pub fn best(&self) -> Option<Estimate> {
        // Ties go to the newest.
        self.recent.iter().rev().min_by_key(|e| e.rtt_ms).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_round_trip_from_four_timestamps() {
        // Controller 7 s ahead; 10 ms each way; 1 ms to answer.
        let p = Probe {
            t1: 1_000,
            t2: 8_010,
            t3: 8_011,
            t4: 1_021,
        };
        assert_eq!(p.sample(), Some((7_000, 20)));
        // Asymmetric delay shows as half its difference, no more.
        let p = Probe {
            t1: 1_000,
            t2: 8_030,
            t3: 8_030,
            t4: 1_040,
        };
        assert_eq!(p.sample(), Some((7_010, 40)));
        let back = Probe {
            t1: 1_000,
            t2: 1,
            t3: 1,
            t4: 999,
        };
        assert_eq!(back.sample(), None, "a reply before its probe");
    }

    #[test]
    fn the_shortest_round_trip_wins_and_old_samples_leave() {
        let mut f = Filter::default();
        let probe = |t1: u64, rtt: u64, offset: u64| Probe {
            t1,
            t2: t1 + offset + rtt / 2,
            t3: t1 + offset + rtt / 2,
            t4: t1 + rtt,
        };
        f.add(probe(0, 4, 7_000));
        let e = f.add(probe(100, 300, 7_200)).unwrap();
        assert_eq!(
            (e.offset_ms, e.rtt_ms),
            (7_000, 4),
            "the queued sample loses"
        );
        // The controller's clock comes back: after SAMPLES probes the 7 s
        // sample is gone.
        for i in 0..SAMPLES as u64 {
            f.add(probe(1_000 + i, 10, 0));
        }
        assert_eq!(f.best().unwrap().offset_ms, 0);
    }
}
