//! Heartbeats and dead-peer detection, the same rule on both ends: send a
//! heartbeat after one interval without sending anything; declare the peer
//! dead after [`DEAD_AFTER_INTERVALS`] intervals without receiving anything.

use std::time::Duration;
use tokio::time::Instant;

/// A peer silent for this many heartbeat intervals is dead.
pub const DEAD_AFTER_INTERVALS: u32 = 3;

/// What the session loop should do when the [`Liveness::deadline`] fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send a heartbeat now.
    Heartbeat,
    /// The peer is dead: close the connection.
    Dead,
    /// Nothing yet (spurious wake-up).
    Nothing,
}

#[derive(Debug, Clone)]
pub struct Liveness {
    send_every: Duration,
    dead_after: Duration,
    last_rx: Instant,
    last_tx: Instant,
}

impl Liveness {
    /// `send_every`: our heartbeat period; `peer_interval`: the peer's, from
    /// which the dead-peer timeout is derived.
    pub fn new(send_every: Duration, peer_interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            send_every: send_every.max(Duration::from_millis(10)),
            dead_after: peer_interval.max(Duration::from_millis(10)) * DEAD_AFTER_INTERVALS,
            last_rx: now,
            last_tx: now,
        }
    }

    pub fn dead_after(&self) -> Duration {
        self.dead_after
    }

    pub fn received(&mut self) {
        self.last_rx = Instant::now();
    }

    pub fn sent(&mut self) {
        self.last_tx = Instant::now();
    }

    /// The next instant at which [`Liveness::due`] has something to say.
    pub fn deadline(&self) -> Instant {
        (self.last_tx + self.send_every).min(self.last_rx + self.dead_after)
    }

    pub fn due(&self, now: Instant) -> Due {
        if now >= self.last_rx + self.dead_after {
            Due::Dead
        } else if now >= self.last_tx + self.send_every {
            Due::Heartbeat
        } else {
            Due::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeat_then_dead() {
        let mut l = Liveness::new(Duration::from_secs(1), Duration::from_secs(2));
        assert_eq!(l.due(Instant::now()), Due::Nothing);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(l.due(Instant::now()), Due::Heartbeat);
        l.sent();
        assert_eq!(l.due(Instant::now()), Due::Nothing);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(l.due(Instant::now()), Due::Dead);
        l.received();
        assert_ne!(l.due(Instant::now()), Due::Dead);
    }
}
