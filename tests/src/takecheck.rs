//! Checks of what the agent recorded from the known x32 test signal.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::alsa::x32_sample;

/// Decodes every file of the manifest `m` of the take in `take`, checks
/// each file's SHA-256 and sample count, and that every channel continues
/// the known signal from the frame the take started at. Returns the frames
/// of the longest channel (all are equal but in a recovered take).
pub fn check_content(take: &Path, m: &serde_json::Value) -> u64 {
    let mut first = None;
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
        let (ch, samples) = crate::decode::interleaved_i32(&path);
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
        let base = *first.get_or_insert_with(|| ((samples[0] >> 8) & 0x3ffff) as u64);
        for (i, s) in samples.iter().enumerate() {
            let (c, n) = (chans[i % chans.len()], at + (i / chans.len()) as u64);
            if *s != x32_sample(c, base + n) {
                panic!(
                    "{}: channel {} differs at take frame {n}",
                    path.display(),
                    c + 1
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
    frames
}
