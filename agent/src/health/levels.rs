//! Level signals — clipping, flatline, low signal, correlated adjacent
//! channels — from the meter's window sums (the same pass over the live
//! stream that makes the meter frames; no second capture).
//!
//! An observation is one second of audio, counted in frames: the same
//! audio gives the same observations, and so the same edges, on a fast or
//! a busy machine. Samples are left-justified i32 (full scale 2^31),
//! scaled to [-1, 1) before they are summed.

use rakkr_protocol::{HealthSignal, Severity};

use super::debounce::Observation;
use crate::config::HealthConfig;

/// Per-window sums the meter keeps for health (see `engine/meter.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSums {
    pub frames: u64,
    /// Per channel: largest |sample| (full scale 1.0), Σx, Σx².
    pub peak: Vec<f64>,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
    /// Per adjacent pair (channel i with i + 1): Σ x_i·x_{i+1}.
    pub sum_xy: Vec<f64>,
}

impl WindowSums {
    pub fn new(channels: usize) -> Self {
        Self {
            frames: 0,
            peak: vec![0.0; channels],
            sum: vec![0.0; channels],
            sum_sq: vec![0.0; channels],
            sum_xy: vec![0.0; channels.saturating_sub(1)],
        }
    }

    /// Adds `other` (the same channel count) into `self`.
    fn add(&mut self, other: &WindowSums) {
        self.frames += other.frames;
        for (a, b) in self.peak.iter_mut().zip(&other.peak) {
            *a = a.max(*b);
        }
        let add = |a: &mut Vec<f64>, b: &Vec<f64>| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.sum, &other.sum);
        add(&mut self.sum_sq, &other.sum_sq);
        add(&mut self.sum_xy, &other.sum_xy);
    }
}

fn db(x: f64) -> f32 {
    if x <= 0.0 {
        -160.0
    } else {
        ((20.0 * x.log10()) as f32).clamp(-160.0, 24.0)
    }
}

/// What one second of audio showed for each level signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub signal: HealthSignal,
    pub observation: Observation,
    /// Channels concerned (1-based), measured value and threshold.
    pub channels: Vec<u16>,
    pub value: f32,
    pub threshold: f32,
}

/// Pearson r of adjacent channels `i`, `i + 1`; `None` when either is
/// constant (no variance: r means nothing).
fn correlation(s: &WindowSums, i: usize) -> Option<f64> {
    let n = s.frames as f64;
    let (mx, my) = (s.sum[i] / n, s.sum[i + 1] / n);
    let vx = s.sum_sq[i] / n - mx * mx;
    let vy = s.sum_sq[i + 1] / n - my * my;
    // NOTE: below ~-150 dB of variance the sums' rounding dominates.
    if vx <= 1e-15 || vy <= 1e-15 {
        return None;
    }
    let cov = s.sum_xy[i] / n - mx * my;
    Some((cov / (vx * vy).sqrt()).clamp(-1.0, 1.0))
}

/// Evaluates one second (`s`) against the thresholds.
pub fn observe(s: &WindowSums, t: &HealthConfig) -> Vec<Observed> {
    let n = s.frames.max(1) as f64;
    let peak: Vec<f32> = s.peak.iter().map(|p| db(*p)).collect();
    let rms: Vec<f32> = s.sum_sq.iter().map(|q| db((q / n).sqrt())).collect();
    let max_peak = peak.iter().copied().fold(-160.0f32, f32::max);
    let max_rms = rms.iter().copied().fold(-160.0f32, f32::max);
    let ch = |i: usize| i as u16 + 1;
    let bad = |b: bool| {
        if b {
            Observation::Bad(Severity::Warning)
        } else {
            Observation::Good
        }
    };
    let clipping: Vec<u16> = (0..peak.len())
        .filter(|&i| peak[i] >= t.clip_dbfs)
        .map(ch)
        .collect();
    let flatline = !rms.is_empty() && max_rms <= t.flatline_dbfs;
    let low = !rms.is_empty() && !flatline && max_rms <= t.low_signal_dbfs;
    // Only pairs that both carry signal: two unused inputs are "equal"
    // without anything being wrong.
    let mut pairs = Vec::new();
    let mut max_r = 0.0f64;
    for i in 0..s.sum_xy.len() {
        if rms[i] <= t.low_signal_dbfs || rms[i + 1] <= t.low_signal_dbfs {
            continue;
        }
        if let Some(r) = correlation(s, i) {
            max_r = max_r.max(r.abs());
            if r.abs() >= f64::from(t.correlation) {
                pairs.push(ch(i));
            }
        }
    }
    vec![
        Observed {
            signal: HealthSignal::Clipping,
            observation: bad(!clipping.is_empty()),
            channels: clipping,
            value: max_peak,
            threshold: t.clip_dbfs,
        },
        Observed {
            signal: HealthSignal::Flatline,
            observation: bad(flatline),
            channels: Vec::new(),
            value: max_rms,
            threshold: t.flatline_dbfs,
        },
        Observed {
            signal: HealthSignal::LowSignal,
            observation: bad(low),
            channels: Vec::new(),
            value: max_rms,
            threshold: t.low_signal_dbfs,
        },
        Observed {
            signal: HealthSignal::ChannelCorrelation,
            observation: bad(!pairs.is_empty()),
            channels: pairs,
            value: max_r as f32,
            threshold: t.correlation,
        },
    ]
}

/// Gathers meter windows into one-second observations.
#[derive(Debug, Default)]
pub struct Seconds {
    acc: Option<WindowSums>,
}

impl Seconds {
    /// Adds a window; returns a whole second's sums once `rate` frames
    /// are in. A window of another channel count (the device changed)
    /// starts afresh.
    pub fn push(&mut self, w: &WindowSums, rate: u32) -> Option<WindowSums> {
        match &mut self.acc {
            Some(a) if a.peak.len() == w.peak.len() => a.add(w),
            _ => self.acc = Some(w.clone()),
        }
        if self
            .acc
            .as_ref()
            .is_some_and(|a| a.frames >= u64::from(rate.max(1)))
        {
            return self.acc.take();
        }
        None
    }

    /// Forgets a partial second (the stream stopped).
    pub fn reset(&mut self) {
        self.acc = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second of `f(channel, frame)` (values in [-1, 1)) as sums.
    fn second(channels: usize, f: impl Fn(usize, usize) -> f64) -> WindowSums {
        let mut s = WindowSums::new(channels);
        for n in 0..48_000 {
            let x: Vec<f64> = (0..channels).map(|c| f(c, n)).collect();
            for c in 0..channels {
                s.peak[c] = s.peak[c].max(x[c].abs());
                s.sum[c] += x[c];
                s.sum_sq[c] += x[c] * x[c];
                if c + 1 < channels {
                    s.sum_xy[c] += x[c] * x[c + 1];
                }
            }
            s.frames += 1;
        }
        s
    }

    fn sine(c: usize, n: usize) -> f64 {
        let f = 200.0 + 110.0 * c as f64;
        0.1 * (n as f64 * 2.0 * std::f64::consts::PI * f / 48_000.0).sin()
    }

    fn bad(o: &[Observed]) -> Vec<(HealthSignal, Vec<u16>)> {
        o.iter()
            .filter(|x| matches!(x.observation, Observation::Bad(_)))
            .map(|x| (x.signal, x.channels.clone()))
            .collect()
    }

    #[test]
    fn distinct_tones_at_minus_20_are_healthy() {
        let o = observe(&second(8, sine), &HealthConfig::default());
        assert_eq!(bad(&o), []);
        let r = o
            .iter()
            .find(|x| x.signal == HealthSignal::ChannelCorrelation)
            .unwrap();
        assert!(
            r.value < 0.1,
            "distinct tones are uncorrelated: {}",
            r.value
        );
    }

    #[test]
    fn each_fault_is_found_on_its_channels() {
        let t = HealthConfig::default();
        // Channel 3 clipping.
        let o = observe(
            &second(4, |c, n| {
                if c == 2 {
                    0.999 * sine(0, n) * 10.0
                } else {
                    sine(c, n)
                }
            }),
            &t,
        );
        assert_eq!(bad(&o), [(HealthSignal::Clipping, vec![3])]);
        // Channel 6 a copy of 5, channel 8 the inverse of 7.
        let o = observe(
            &second(8, |c, n| match c {
                5 => sine(4, n),
                7 => -sine(6, n),
                _ => sine(c, n),
            }),
            &t,
        );
        assert_eq!(bad(&o), [(HealthSignal::ChannelCorrelation, vec![5, 7])]);
        // Silence.
        let o = observe(&second(4, |_, _| 0.0), &t);
        assert_eq!(bad(&o), [(HealthSignal::Flatline, vec![])]);
        // -70 dBFS everywhere: low, not flat; too quiet to judge pairs.
        let o = observe(&second(4, |c, n| sine(c, n) * 10f64.powf(-50.0 / 20.0)), &t);
        assert_eq!(bad(&o), [(HealthSignal::LowSignal, vec![])]);
    }

    #[test]
    fn two_silent_inputs_are_not_a_correlated_pair() {
        let o = observe(
            &second(4, |c, n| if c < 2 { sine(c, n) } else { 0.0 }),
            &HealthConfig::default(),
        );
        assert_eq!(bad(&o), []);
    }

    #[test]
    fn windows_make_seconds_by_frames() {
        let mut s = Seconds::default();
        let mut w = WindowSums::new(2);
        w.frames = 4800;
        w.peak = vec![0.5, 0.25];
        let got: Vec<_> = (0..25).filter_map(|_| s.push(&w, 48_000)).collect();
        assert_eq!(got.len(), 2, "25 windows of 0.1 s: two whole seconds");
        assert_eq!(got[0].frames, 48_000);
        assert_eq!(got[0].peak, vec![0.5, 0.25]);
    }
}
