//! Audio the device skipped without saying so, found from capture
//! timestamps. The clock lives in the realtime callback's closure (the
//! callback thread owns it; nothing else reads it) and never allocates.

use std::time::Duration;

/// Finds audio the device skipped: a stream that delivered fewer frames
/// than the time that passed.
///
/// Lateness is the capture time of a callback's first frame minus the time
/// its frames account for (everything delivered or found missing before
/// it, at the nominal rate). It is measured against a baseline, the
/// smallest lateness of the last window of `LATE_CALLBACKS` quiet
/// callbacks, not against zero.
///
/// NOTE: a late callback alone proves nothing (plugins and schedulers
/// deliver in bursts that catch up); only lateness over the baseline that
/// persists over `LATE_CALLBACKS` callbacks is a loss, and its size is the
/// smallest excess seen over them. ALSA plugins (JACK's among them) can
/// drop audio on overrun without reporting an xrun; this finds those too.
///
/// NOTE: the baseline follows the device's clock. A console's sample clock
/// is not the system clock: 50 ppm apart they drift by 0.54 s over a
/// three-hour show, which measured from zero would read as a phantom xrun
/// every few minutes (slow device) or hide real losses (fast device).
/// Slips below the threshold (one or two periods a loaded JACK server
/// skips) go into the baseline with the drift instead of adding up into
/// the size of the next real loss.
#[derive(Debug, Default)]
pub(super) struct Clock {
    /// Frames the stream accounts for (delivered plus found missing).
    frames: u64,
    /// Steady lateness in seconds (negative: the device runs fast).
    base: f64,
    /// Smallest lateness of the quiet window being gathered, and how many
    /// callbacks it holds.
    window_min: f64,
    window: u32,
    /// Consecutive late callbacks, the smallest excess among them, and
    /// the ring position where the lateness began.
    late: u32,
    min_late: f64,
    late_at: u64,
}

const LATE_CALLBACKS: u32 = 8;

impl Clock {
    /// Feeds a callback of `frames` frames captured at `at` (since the
    /// stream's first frame, as the callback measures it), when `pushed`
    /// frames were already in the ring stream. Returns (position, frames)
    /// of a loss once it is certain.
    pub(super) fn gap(
        &mut self,
        at: Duration,
        frames: usize,
        rate: u32,
        pushed: u64,
    ) -> Option<(u64, u64)> {
        let per_frame = 1.0 / f64::from(rate);
        let lateness = at.as_secs_f64() - self.frames as f64 * per_frame;
        self.frames += frames as u64;
        let threshold = (2.0 * frames as f64 * per_frame).max(0.02);
        let excess = lateness - self.base;
        if excess <= threshold {
            self.late = 0;
            // A quiet callback: the baseline's next window.
            self.window_min = if self.window == 0 {
                lateness
            } else {
                self.window_min.min(lateness)
            };
            self.window += 1;
            if self.window == LATE_CALLBACKS {
                self.base = self.window_min;
                self.window = 0;
            }
            return None;
        }
        if self.late == 0 {
            self.min_late = excess;
            self.late_at = pushed;
        }
        self.min_late = self.min_late.min(excess);
        self.late += 1;
        if self.late < LATE_CALLBACKS {
            return None;
        }
        self.late = 0;
        let lost = (self.min_late * f64::from(rate)).round() as u64;
        self.frames += lost;
        // The window in progress measured lateness before the loss was
        // accounted for.
        self.window = 0;
        Some((self.late_at, lost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_that_catches_up_is_not_a_loss() {
        let mut c = Clock::default();
        let ms = |x: f64| Duration::from_secs_f64(x / 1000.0);
        // 10 ms callbacks, then the device stalls 60 ms and delivers the
        // backlog in a burst: late, then early again.
        let mut t = 0.0;
        for i in 0..20u64 {
            assert_eq!(c.gap(ms(t), 480, 48_000, i * 480), None);
            t += 10.0;
        }
        t += 60.0;
        for i in 20..40u64 {
            assert_eq!(c.gap(ms(t), 480, 48_000, i * 480), None, "callback {i}");
            t = (t - 9.0).max(10.0 * (i + 1) as f64);
        }
    }

    #[test]
    fn audio_that_never_came_is_found_with_its_position_and_size() {
        let mut c = Clock::default();
        let ms = |x: f64| Duration::from_secs_f64(x / 1000.0);
        let mut found = None;
        for i in 0..40u64 {
            // 300 ms of audio (14 400 frames) vanish after callback 10.
            let t = 10.0 * i as f64 + if i >= 10 { 300.0 } else { 0.0 };
            if let Some(g) = c.gap(ms(t), 480, 48_000, i * 480) {
                found.get_or_insert(g);
            }
        }
        assert_eq!(found, Some((4800, 14_400)));
    }

    /// Feeds `n` callbacks of 480 frames at 48 kHz from a device whose
    /// clock runs `ppm` slow (positive) or fast, skipping `lost(i)` ms of
    /// audio before callback i; returns the losses found.
    fn run(n: u64, ppm: f64, lost: impl Fn(u64) -> f64) -> Vec<(u64, u64)> {
        let mut c = Clock::default();
        let mut skipped = 0.0;
        let mut found = Vec::new();
        for i in 0..n {
            skipped += lost(i);
            let ms = 10.0 * i as f64 * (1.0 + ppm * 1e-6) + skipped;
            found.extend(c.gap(Duration::from_secs_f64(ms / 1000.0), 480, 48_000, i * 480));
        }
        found
    }

    #[test]
    fn clock_drift_over_a_long_show_is_not_an_xrun() {
        // Three hours, 100 ppm either way: 1.08 s of drift, no loss.
        for ppm in [100.0, -100.0] {
            assert_eq!(run(3 * 360_000, ppm, |_| 0.0), vec![], "{ppm} ppm");
        }
    }

    #[test]
    fn a_loss_after_hours_of_drift_is_found_with_its_size() {
        // A 300 ms loss (14 400 frames) two hours in, on a slow and on a
        // fast clock: the size is the loss, not the loss plus the drift.
        let at = 720_000;
        for ppm in [100.0, -100.0] {
            let found = run(at + 100, ppm, |i| if i == at { 300.0 } else { 0.0 });
            assert_eq!(found.len(), 1, "{ppm} ppm: {found:?}");
            assert_eq!(found[0].0, at * 480);
            assert!(found[0].1.abs_diff(14_400) <= 10, "{ppm} ppm: {found:?}");
        }
    }

    #[test]
    fn small_slips_before_a_loss_are_not_counted_in_it() {
        // Three 10 ms slips (under the 20 ms threshold), then 300 ms.
        let found = run(400, 0.0, |i| match i {
            50 | 100 | 150 => 10.0,
            300 => 300.0,
            _ => 0.0,
        });
        assert_eq!(found, vec![(300 * 480, 14_400)]);
    }
}
