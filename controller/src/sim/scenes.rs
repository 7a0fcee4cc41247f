//! Known programme material for health tests: a console whose signal the
//! test changes as it goes — healthy tones, a clipping channel, silence,
//! a low signal, a duplicated or a phase-inverted pair — scheduled at
//! device frames, so the same audio comes out however busy the machine.
//!
//! Healthy: channel c (0-based) carries a sine of `200 + 110·c` Hz at
//! −20 dBFS peak; over any whole second, distinct tones are uncorrelated.

use std::sync::{Arc, Mutex};

/// What the console plays from a frame on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    Healthy,
    /// Channel `n` (1-based) at full scale: its peak is 0 dBFS.
    Clip(usize),
    /// Digital silence on every channel.
    Silence,
    /// Every channel 50 dB below healthy (−70 dBFS peak).
    Low,
    /// Channel `n + 1` (1-based) carries channel `n`'s signal.
    Duplicate(usize),
    /// Channel `n + 1` carries channel `n`'s signal inverted.
    Invert(usize),
}

/// A schedule of scenes by device frame, shared with the feeder thread.
#[derive(Debug, Clone)]
pub struct Scenes(Arc<Mutex<Vec<(u64, Scene)>>>);

impl Default for Scenes {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(vec![(0, Scene::Healthy)])))
    }
}

fn tone(c: usize, n: u64, amplitude: f64) -> f64 {
    let f = 200.0 + 110.0 * c as f64;
    // Whole cycles per second: the phase is exact at any frame.
    let phase = (n % 48_000) as f64 * f / 48_000.0;
    amplitude * (phase * 2.0 * std::f64::consts::PI).sin()
}

/// The sample of channel `c` (0-based) at frame `n` in `scene`, in
/// [-1, 1).
pub fn sample(scene: Scene, c: usize, n: u64) -> f64 {
    const HEALTHY: f64 = 0.1;
    match scene {
        Scene::Healthy => tone(c, n, HEALTHY),
        Scene::Clip(ch) if c + 1 == ch => tone(c, n, 1.0),
        Scene::Clip(_) => tone(c, n, HEALTHY),
        Scene::Silence => 0.0,
        Scene::Low => tone(c, n, HEALTHY * 10f64.powf(-50.0 / 20.0)),
        Scene::Duplicate(ch) if c == ch => tone(c - 1, n, HEALTHY),
        Scene::Invert(ch) if c == ch => -tone(c - 1, n, HEALTHY),
        Scene::Duplicate(_) | Scene::Invert(_) => tone(c, n, HEALTHY),
    }
}

/// The S32 sample the console sends for channel `c` at frame `n`.
pub fn sample_s32(scene: Scene, c: usize, n: u64) -> i32 {
    s32(sample(scene, c, n))
}

/// A sample in [-1, 1) as left-justified S32 (24 bits, like a console).
fn s32(x: f64) -> i32 {
    ((x * 8_388_607.0).round() as i32).clamp(-8_388_608, 8_388_607) << 8
}

impl Scenes {
    /// Plays `scene` from device frame `frame` on (later entries win).
    pub fn at(&self, frame: u64, scene: Scene) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(f, _)| *f < frame);
        v.push((frame, scene));
    }

    fn scene(v: &[(u64, Scene)], n: u64) -> Scene {
        v.iter()
            .rev()
            .find(|(f, _)| *f <= n)
            .map_or(Scene::Healthy, |(_, s)| *s)
    }

    /// The feeder's signal for `channels` channels.
    pub fn signal(&self, channels: usize) -> super::Signal {
        let me = self.clone();
        Box::new(move |first, frames, out| {
            let v = me.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for n in first..first + frames {
                let scene = Self::scene(&v, n);
                for c in 0..channels {
                    out.extend_from_slice(&s32(sample(scene, c, n)).to_le_bytes());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_switch_at_their_frames() {
        let s = Scenes::default();
        s.at(100, Scene::Silence);
        s.at(200, Scene::Clip(2));
        let mut sig = s.signal(2);
        let mut out = Vec::new();
        sig(99, 2, &mut out);
        let v: Vec<i32> = out
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_ne!(v[0], 0, "frame 99 is healthy");
        assert_eq!(&v[2..], &[0, 0], "frame 100 is silent");
        assert_eq!(
            sample(Scene::Duplicate(1), 1, 7),
            sample(Scene::Healthy, 0, 7)
        );
        assert_eq!(
            sample(Scene::Invert(1), 1, 7),
            -sample(Scene::Healthy, 0, 7)
        );
        let peak = (0..48_000u64)
            .map(|n| sample(Scene::Clip(2), 1, n).abs())
            .fold(0.0, f64::max);
        assert!(peak > 0.999, "channel 2 reaches full scale: {peak}");
    }
}
