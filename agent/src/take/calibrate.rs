//! What encoding costs on this node: CPU time per sample of one format,
//! measured by encoding a second of mono audio through the real encoder
//! into a scratch file beside the takes (then removed).
//!
//! Why measure: a node's CPU (a 4-core ARM box or a desktop) and FFmpeg's
//! build decide whether one more take fits; a constant would be wrong on
//! most of them. Thread CPU time, not wall time: on a busy machine the
//! wall clock runs on while the thread waits for a core, which says
//! nothing of what the encoder needs.

use std::path::Path;

use anyhow::Context;
use nix::time::{ClockId, clock_gettime};

use super::encoder::{Container, TrackWriter};

/// Frames encoded for one measurement (1 s at 48 kHz: about 1–5 ms).
const FRAMES: usize = 48_000;

/// CPU time this thread has used, in ns.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).context("reading thread CPU time")?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// A second of a signal no encoder predicts well: a tone under noise
/// (xorshift), 24-bit, left-justified as captured.
fn signal() -> Vec<i32> {
    let mut x: u32 = 0x9e37_79b9;
    (0..FRAMES)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let tone = ((i as f64 * 0.0577).sin() * 4_000_000.0) as i32;
            let noise = (x >> 12) as i32 - (1 << 19);
            (tone + noise) << 8
        })
        .collect()
}

/// Thread CPU ns that encoding one sample in `container` takes, measured
/// in a scratch file in `dir`.
pub fn cost_ns_per_sample(container: Container, dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join(format!(
        ".calibrate-{}.{}",
        std::process::id(),
        container.extension()
    ));
    let res = (|| -> anyhow::Result<f64> {
        let audio = signal();
        let mut w = TrackWriter::create(&path, container, 1, 48_000, "calibration", None)?;
        let before = thread_cpu_ns()?;
        w.write(&audio)?;
        let spent = thread_cpu_ns()? - before;
        w.finish()?;
        Ok(spent as f64 / FRAMES as f64)
    })();
    // NOTE: removed whatever happened: a scratch file is never left in
    // the recordings directory.
    let _ = std::fs::remove_file(&path);
    res.with_context(|| format!("measuring the {container:?} encoder's cost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_format_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        for c in [Container::Flac, Container::Wav, Container::W64] {
            let ns = cost_ns_per_sample(c, dir.path()).unwrap();
            assert!(ns > 0.0 && ns.is_finite(), "{c:?}: {ns}");
            eprintln!("{c:?}: {ns:.1} ns of CPU per sample");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
