//! Metering from the live stream (no second capture): per channel, over
//! windows of `1 / capture.meter_hz` s (default 100 ms), peak and RMS in
//! dBFS, clipping, and cheap quality figures — crest factor,
//! zero-crossing rate and heuristic noise/speech scores. Runs on the
//! writer thread, one pass over each block. The same
//! pass keeps the sums the health signals need (see `health/levels.rs`):
//! Σx, Σx² and Σ of each adjacent pair's products.
//!
//! Samples are left-justified i32 (full scale 2^31). A sample counts as
//! clipping at the largest 24-bit code (`|s| >= 0x7FFF_FF00`), which is
//! what a console's converter delivers when it clips.

use rakkr_protocol::{Level, MeterFrame, Quality};

use crate::health::levels::WindowSums;

/// Frames per meter window: `hz` windows per second.
pub fn window_frames(rate: u32, hz: u32) -> usize {
    (rate / hz.max(1)).max(1) as usize
}

const FULL_SCALE: f64 = 2_147_483_648.0;
const CLIP: i64 = 0x7FFF_FF00;
/// dBFS reported for digital silence (the controller's range is -160..24).
const FLOOR_DB: f32 = -160.0;

#[derive(Debug, Clone, Default)]
struct Acc {
    peak: i64,
    sum_sq: f64,
    crossings: u32,
    last_sign: bool,
    clipped: bool,
    /// Σx and Σ x·x_next (the next channel), raw i32 values.
    sum: f64,
    sum_xy: f64,
}

/// Accumulates windows and yields a frame per full window.
#[derive(Debug)]
pub struct Meter {
    acc: Vec<Acc>,
    frames: usize,
    window: usize,
    interface_id: String,
    rate: u32,
}

/// A completed window: the frame for the controller and the sums for
/// health.
#[derive(Debug, Clone)]
pub struct Window {
    pub frame: MeterFrame,
    pub sums: WindowSums,
    pub rate: u32,
}

fn db(x: f64) -> f32 {
    if x <= 0.0 {
        FLOOR_DB
    } else {
        ((20.0 * x.log10()) as f32).clamp(FLOOR_DB, 24.0)
    }
}

impl Meter {
    /// `hz` frames per second (see `capture.meter_hz`).
    pub fn new(channels: u16, rate: u32, interface_id: &str, hz: u32) -> Self {
        Self {
            acc: vec![Acc::default(); usize::from(channels)],
            frames: 0,
            window: window_frames(rate, hz),
            interface_id: interface_id.to_owned(),
            rate,
        }
    }

    /// Feeds interleaved frames; returns a meter frame each time a window
    /// completes (the last one if a block spans several).
    pub fn feed(&mut self, block: &[i32]) -> Option<Window> {
        let ch = self.acc.len();
        let mut out = None;
        for frame in block.chunks_exact(ch) {
            for (c, (a, s)) in self.acc.iter_mut().zip(frame).enumerate() {
                let v = i64::from(*s);
                let mag = v.abs();
                a.peak = a.peak.max(mag);
                a.clipped |= mag >= CLIP;
                // Raw sums, scaled to full scale once per window (flush).
                let x = v as f64;
                a.sum += x;
                a.sum_sq += x * x;
                if let Some(next) = frame.get(c + 1) {
                    a.sum_xy += x * f64::from(*next);
                }
                let sign = v >= 0;
                if sign != a.last_sign {
                    a.crossings += 1;
                    a.last_sign = sign;
                }
            }
            self.frames += 1;
            if self.frames == self.window {
                out = Some(self.flush());
            }
        }
        out
    }

    fn flush(&mut self) -> Window {
        let n = self.frames as f64;
        let ch = self.acc.len();
        let mut sums = WindowSums::new(ch);
        sums.frames = self.frames as u64;
        for (i, a) in self.acc.iter().enumerate() {
            sums.peak[i] = a.peak as f64 / FULL_SCALE;
            sums.sum[i] = a.sum / FULL_SCALE;
            sums.sum_sq[i] = a.sum_sq / (FULL_SCALE * FULL_SCALE);
            if i + 1 < ch {
                sums.sum_xy[i] = a.sum_xy / (FULL_SCALE * FULL_SCALE);
            }
        }
        let levels = self
            .acc
            .iter_mut()
            .enumerate()
            .map(|(i, a)| {
                let peak = a.peak as f64 / FULL_SCALE;
                let rms = (a.sum_sq / n).sqrt() / FULL_SCALE;
                let zcr = (f64::from(a.crossings) / n).clamp(0.0, 1.0) as f32;
                let crest = if rms > 0.0 {
                    ((20.0 * (peak / rms).log10()) as f32).clamp(0.0, 80.0)
                } else {
                    0.0
                };
                let quality = (rms > 1e-6).then(|| scores(crest, zcr));
                let level = Level {
                    channel_index: i as u16 + 1,
                    peak_dbfs: db(peak),
                    rms_dbfs: db(rms),
                    clipping: a.clipped,
                    quality,
                };
                *a = Acc {
                    last_sign: a.last_sign,
                    ..Acc::default()
                };
                level
            })
            .collect();
        self.frames = 0;
        Window {
            frame: MeterFrame {
                captured_at_ms: crate::util::now_ms(),
                interface_id: self.interface_id.clone(),
                levels,
            },
            sums,
            rate: self.rate,
        }
    }
}

/// Heuristic scores from crest factor and zero-crossing rate.
///
/// Broadband noise has a low crest factor (about 10–13 dB for Gaussian
/// noise) and a high zero-crossing rate; voiced speech crosses zero less
/// (about 0.02–0.15 of samples at 48 kHz) and is peaky (crest 12–25 dB).
/// These are cheap cues, not a classifier.
fn scores(crest_db: f32, zcr: f32) -> Quality {
    let ramp = |x: f32, lo: f32, hi: f32| ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    let noise = ramp(zcr, 0.05, 0.3) * (1.0 - ramp(crest_db, 13.0, 20.0));
    let speech_zcr = 1.0 - (zcr - 0.06).abs() / 0.1;
    let speech = speech_zcr.clamp(0.0, 1.0) * ramp(crest_db, 9.0, 16.0);
    Quality {
        crest_factor_db: crest_db,
        zero_crossing_rate: zcr,
        noise_score: noise,
        speech_score: speech,
        speech_like: speech >= 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_sine_reads_0_dbfs_peak_and_minus_3_rms() {
        let mut m = Meter::new(2, 48_000, "x", 10);
        let mut block = Vec::new();
        for n in 0..4800 {
            let s = ((n as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0).sin()
                * 0x7FFF_FF00 as f64) as i32;
            block.extend_from_slice(&[s, 0]);
        }
        let w = m.feed(&block).expect("one window");
        let f = &w.frame;
        let l = &f.levels[0];
        assert!(l.peak_dbfs.abs() < 0.01, "{}", l.peak_dbfs);
        assert!((l.rms_dbfs + 3.01).abs() < 0.05, "{}", l.rms_dbfs);
        assert!(l.clipping, "the top 24-bit code counts as clipping");
        let q = l.quality.as_ref().unwrap();
        assert!((q.crest_factor_db - 3.01).abs() < 0.05);
        // 1 kHz crosses zero 2000 times a second.
        assert!((q.zero_crossing_rate - 2000.0 / 48_000.0).abs() < 0.002);
        assert_eq!(f.levels[1].peak_dbfs, FLOOR_DB, "silence");
        assert_eq!(f.levels[1].quality, None);
        assert_eq!(f.levels[1].channel_index, 2);
        assert_eq!(w.sums.frames, 4800);
        assert!(
            (w.sums.sum_sq[0] / 4800.0 - 0.5).abs() < 0.001,
            "mean square of a full-scale sine"
        );
        assert_eq!(w.sums.sum_xy, vec![0.0], "times a silent channel");
    }

    #[test]
    fn ten_frames_a_second() {
        let mut m = Meter::new(1, 48_000, "x", 10);
        let frames = (0..10)
            .filter(|_| m.feed(&[1 << 20; 4800]).is_some())
            .count();
        assert_eq!(frames, 10);
        assert!(m.feed(&[0; 4799]).is_none());
    }

    #[test]
    fn the_meter_rate_sets_the_window() {
        for (hz, window) in [(1, 48_000), (20, 2_400), (50, 960)] {
            let mut m = Meter::new(1, 48_000, "x", hz);
            // Blocks of 480 frames: never more than one window in one.
            let frames = (0..100)
                .filter(|_| m.feed(&[1 << 20; 480]).is_some())
                .count();
            assert_eq!(frames, 48_000 / window, "{hz} Hz");
        }
    }
}
