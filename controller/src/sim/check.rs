//! Checks of what the agent recorded from the known x32 test signal.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::x32_sample;

/// The signal's frame counter wraps at 2^18 frames (5.4 s at 48 kHz).
const WRAP: u64 = 1 << 18;

/// Where the take's frames sit in the signal: take frame `n` is signal
/// frame `base + n + (device drops before n)`, modulo [`WRAP`].
struct Position<'a> {
    base: u64,
    /// (take frame, frames the device dropped just before it).
    jumps: Vec<(u64, u64)>,
    drops: &'a [std::ops::Range<u64>],
}

impl Position<'_> {
    fn expected(&self, n: u64) -> u64 {
        let skipped: u64 = self
            .jumps
            .iter()
            .filter(|(at, _)| *at <= n)
            .map(|(_, k)| k)
            .sum();
        (self.base + n + skipped) % WRAP
    }

    /// At take frame `n` the content jumped from where it should be to
    /// signal frame `actual`: accepted only when the device logged exactly
    /// that drop (same start and length, modulo the wrap).
    fn excuse(&mut self, n: u64, actual: u64) -> bool {
        if self.jumps.iter().any(|(at, _)| *at == n) {
            return false;
        }
        let expected = self.expected(n);
        let jump = (actual + WRAP - expected) % WRAP;
        let logged = self
            .drops
            .iter()
            .any(|r| r.start % WRAP == expected && (r.end - r.start) % WRAP == jump);
        if logged {
            self.jumps.push((n, jump));
        }
        logged
    }
}

/// What [`check_content_detail`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// Frames of the longest channel.
    pub frames: u64,
    /// Signal frames the device dropped inside the take (excused jumps).
    pub device_dropped: u64,
}

/// Decodes every file of the manifest `m` of the take in `take`, checks
/// each file's SHA-256 and sample count, and that every channel continues
/// the known signal from the frame the take started at — except where the
/// device itself dropped audio (`drops`, the simulated console's
/// [`super::DropLog`]): a jump in the content is accepted only when
/// the device logged exactly it, so the check fails only for audio the
/// agent lost. Returns the frames of the longest channel (all are equal
/// but in a recovered take).
pub fn check_content(take: &Path, m: &serde_json::Value, drops: &[std::ops::Range<u64>]) -> u64 {
    check_content_detail(take, m, drops).frames
}

/// [`check_content`], also saying how much the device dropped.
pub fn check_content_detail(
    take: &Path,
    m: &serde_json::Value,
    drops: &[std::ops::Range<u64>],
) -> Content {
    let mut pos: Option<Position<'_>> = None;
    let mut total = HashMap::<u64, u64>::new();
    for f in m["files"].as_array().expect("manifest shape") {
        let path = take.join(f["file"].as_str().expect("manifest shape"));
        assert_eq!(
            f["sha256"].as_str().expect("manifest shape"),
            hex::encode(Sha256::digest(
                std::fs::read(&path).expect("manifest shape")
            )),
            "{}",
            path.display()
        );
        let chans: Vec<usize> = f["channels"]
            .as_array()
            .expect("manifest shape")
            .iter()
            .map(|c| c.as_u64().expect("manifest shape") as usize - 1)
            .collect();
        let (ch, samples) = super::decode::interleaved_i32(&path);
        assert_eq!(usize::from(ch), chans.len());
        let at = f["firstSample"].as_u64().expect("manifest shape");
        assert_eq!(
            samples.len() as u64,
            f["samples"].as_u64().expect("manifest shape") * u64::from(ch),
            "{}",
            path.display()
        );
        // The FIFO may have been read from before the take: the first
        // sample names the frame the take started at.
        let p = pos.get_or_insert_with(|| Position {
            base: ((samples[0] >> 8) & 0x3ffff) as u64,
            jumps: Vec::new(),
            drops,
        });
        for (i, s) in samples.iter().enumerate() {
            let (c, n) = (chans[i % chans.len()], at + (i / chans.len()) as u64);
            if *s == x32_sample(c, p.expected(n)) {
                continue;
            }
            let actual = ((*s >> 8) & 0x3ffff) as u64;
            let same_channel = ((*s as u32) >> 26) as usize == c;
            if !(same_channel && p.excuse(n, actual) && *s == x32_sample(c, p.expected(n))) {
                panic!(
                    "{}: channel {} differs at take frame {n} (signal frame {actual} where {} was due; the device logged drops {:?})",
                    path.display(),
                    c + 1,
                    p.expected(n),
                    drops
                );
            }
        }
        *total.entry(chans[0] as u64).or_default() +=
            f["samples"].as_u64().expect("manifest shape");
    }
    // After a crash each file of the open segment keeps what it holds
    // intact, on its own: channels may end apart, never start apart.
    let frames = total.values().copied().max().unwrap_or(0);
    if m["status"] != "recovered" {
        assert!(
            total.values().all(|t| *t == frames),
            "every channel holds the same frames: {total:?}"
        );
    }
    Content {
        frames,
        device_dropped: pos.map_or(0, |p| p.jumps.iter().map(|(_, k)| k).sum()),
    }
}
