//! Time the JACK test device skipped, seen from inside it (the feeder's
//! process callback).
//!
//! JACK's dummy backend sleeps until each cycle's planned start. When a
//! cycle ends after the next one should have begun, it logs
//! `JackTimedDriver::Process XRun` and starts its timeline afresh from
//! now: the time it was late passes with no cycle, no frame and no step of
//! JACK's frame time (which the feeder's `skipped` count watches).
//! See: jack2 `common/JackTimedDriver.cpp` (`ProcessWait`) and
//! `common/JackFrameTimer.cpp` (`ResetFrameTime`).
//!
//! On a console that time would be audio lost, and the agent, which reads
//! capture timestamps, rightly reports it as a gap; but the feeder's
//! counter signal runs on without a jump, so a test that looked only at
//! the recorded signal would call the agent's report a phantom. This
//! measures those skips where they happen: the wall-clock start of each
//! cycle against the frames the feeder wrote.
//!
//! NOTE: the dummy backend never runs early and never catches up, so a
//! skip raises the lateness of every later cycle for good, while a late
//! wake-up raises one. A skip is therefore confirmed by the smallest
//! lateness of a whole window of [`WINDOW`] cycles rising over the last
//! window's, by at least half a period.

/// Cycles per confirmation window (32 periods of 256 frames: 171 ms).
pub const WINDOW: u32 = 32;

/// The device's timeline as the feeder sees it. Realtime-safe: plain
/// arithmetic, no allocation.
#[derive(Debug, Default)]
pub struct Timeline {
    /// Signal frame of the first cycle, and its start (seconds on the
    /// caller's clock).
    origin: Option<(u64, f64)>,
    /// Steady lateness (seconds), once a first window has been seen.
    base: Option<f64>,
    window_min: f64,
    window: u32,
    /// Signal frame of the first cycle of the current run of late cycles.
    run_from: Option<u64>,
}

impl Timeline {
    /// Feeds the cycle whose first frame is signal frame `n`, starting at
    /// `now` seconds; returns (signal frame, frames) of a skip once the
    /// window confirms it. `period`: frames per cycle.
    pub fn cycle(&mut self, n: u64, now: f64, rate: u32, period: u32) -> Option<(u64, u64)> {
        let (n0, t0) = *self.origin.get_or_insert((n, now));
        let rate = f64::from(rate);
        let late = (now - t0) - (n - n0) as f64 / rate;
        let half = f64::from(period) / rate / 2.0;
        let base = self.base.unwrap_or(late);
        if late - base > half {
            self.run_from.get_or_insert(n);
        } else {
            self.run_from = None;
        }
        self.window_min = if self.window == 0 {
            late
        } else {
            self.window_min.min(late)
        };
        self.window += 1;
        if self.window < WINDOW {
            return None;
        }
        self.window = 0;
        let found = match (self.base, self.run_from) {
            (Some(base), Some(at)) if self.window_min - base > half => {
                Some((at, ((self.window_min - base) * rate).round() as u64))
            }
            _ => None,
        };
        // A lower minimum is a first window's late wake-up leaving the base.
        self.base = Some(self.window_min);
        if found.is_some() {
            self.run_from = None;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const P: u32 = 256;

    /// Runs `cycles` cycles; `skip(i)` seconds of timeline vanish before
    /// cycle i, `jitter(i)` seconds delay its wake-up alone.
    fn run(cycles: u64, skip: impl Fn(u64) -> f64, jitter: impl Fn(u64) -> f64) -> Vec<(u64, u64)> {
        let mut t = Timeline::default();
        let mut skipped = 0.0;
        let mut found = Vec::new();
        for i in 0..cycles {
            skipped += skip(i);
            let n = 1_000 + i * u64::from(P);
            let now = 5.0 + i as f64 * f64::from(P) / f64::from(RATE) + skipped + jitter(i);
            found.extend(t.cycle(n, now, RATE, P));
        }
        found
    }

    #[test]
    fn a_steady_device_skips_nothing() {
        assert_eq!(run(10_000, |_| 0.0, |_| 0.0), vec![]);
    }

    #[test]
    fn late_wake_ups_are_not_skips() {
        // Every 7th cycle wakes 4 ms late, every 50th 30 ms late.
        let jitter = |i: u64| match (i % 7, i % 50) {
            (_, 0) => 0.030,
            (0, _) => 0.004,
            _ => 0.0,
        };
        assert_eq!(run(10_000, |_| 0.0, jitter), vec![]);
    }

    #[test]
    fn a_skip_is_found_where_it_began_with_its_size() {
        // 32 ms (1,536 frames) vanish before cycle 500, inside a window.
        let found = run(2_000, |i| if i == 500 { 0.032 } else { 0.0 }, |_| 0.0);
        assert_eq!(found, vec![(1_000 + 500 * u64::from(P), 1_536)]);
    }

    #[test]
    fn skips_apart_are_found_apart_among_late_wake_ups() {
        let found = run(
            3_000,
            |i| match i {
                640 => 0.010,
                2_000 => 0.100,
                _ => 0.0,
            },
            |i| if i % 11 == 0 { 0.003 } else { 0.0 },
        );
        assert_eq!(
            found,
            vec![
                (1_000 + 640 * u64::from(P), 480),
                (1_000 + 2_000 * u64::from(P), 4_800)
            ]
        );
    }
}
