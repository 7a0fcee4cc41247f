//! A take: read the ring, de-interleave, feed one encoder per channel, then
//! close every file, hash it and write the manifest.
//!
//! Runs on its own (non-realtime) writer thread; the capture callback only
//! fills the ring. Layout of a take directory:
//! ```text
//! <output>/<take-id>/01-<name>.flac … NN-<name>.flac
//! <output>/<take-id>/manifest.json
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rakkr_protocol::fsutil::atomic_write;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::flac::FlacWriter;
use crate::capture::Capture;

/// Frames moved from the ring per step.
const BLOCK_FRAMES: usize = 4096;
/// A device silent this long (no frames at all) fails the take.
const NO_AUDIO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct TakeSpec {
    pub take_id: String,
    /// The take directory is `<output>/<take_id>`.
    pub output: PathBuf,
    /// Stop after this many frames (`None`: until `stop` is set).
    pub frames: Option<u64>,
    /// One name per channel (file names and metadata).
    pub channel_names: Vec<String>,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// File name inside the take directory.
    pub file: String,
    /// 1-based channel index.
    pub channel: u16,
    pub name: String,
    pub first_sample: u64,
    pub samples: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// Position in the take (frames) where audio is missing.
    pub at_sample: u64,
    pub frames_lost: u64,
    pub cause: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub take_id: String,
    pub agent_version: &'static str,
    pub started_at: String,
    pub finished_at: String,
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub capture_format: String,
    pub format: &'static str,
    pub bits_per_sample: u8,
    pub frames: u64,
    pub files: Vec<FileEntry>,
    pub gaps: Vec<Gap>,
    pub xruns: u64,
}

/// A safe file-name fragment from a channel name.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').chars().take(48).collect()
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Records one take from a running capture. Returns the manifest (also
/// written to `manifest.json` in the take directory).
pub fn record(
    capture: &mut Capture,
    spec: &TakeSpec,
    stop: &AtomicBool,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let ch = usize::from(capture.channels);
    if spec.channel_names.len() != ch {
        bail!(
            "{} channel names for {ch} channels",
            spec.channel_names.len()
        );
    }
    let dir = spec.output.join(&spec.take_id);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating take directory {}", dir.display()))?;
    let started_at = crate::util::now_iso8601();
    let mut writers = Vec::with_capacity(ch);
    for (i, name) in spec.channel_names.iter().enumerate() {
        let file = format!("{:02}-{}.flac", i + 1, slug(name));
        writers.push(FlacWriter::create(
            &dir.join(&file),
            capture.sample_rate,
            name,
        )?);
    }
    let mut bufs: Vec<Vec<i32>> = (0..ch).map(|_| Vec::with_capacity(BLOCK_FRAMES)).collect();
    let mut done: u64 = 0;
    let mut last_audio = Instant::now();
    loop {
        let remaining = spec.frames.map_or(u64::MAX, |f| f - done);
        if remaining == 0 || (stop.load(Ordering::Relaxed) && capture.consumer.slots() < ch) {
            break;
        }
        let frames = (capture.consumer.slots() / ch)
            .min(BLOCK_FRAMES)
            .min(remaining.min(usize::MAX as u64) as usize);
        if frames == 0 {
            if capture.stats.device_lost.load(Ordering::Acquire) {
                bail!(
                    "capture device {} was lost after {done} frames",
                    spec.device
                );
            }
            if last_audio.elapsed() > NO_AUDIO_TIMEOUT {
                bail!(
                    "no audio from {} for {NO_AUDIO_TIMEOUT:?} (after {done} frames)",
                    spec.device
                );
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        last_audio = Instant::now();
        let chunk = capture
            .consumer
            .read_chunk(frames * ch)
            .context("reading the capture ring")?;
        let (a, b) = chunk.as_slices();
        for buf in &mut bufs {
            buf.clear();
        }
        for (i, s) in a.iter().chain(b).enumerate() {
            bufs[i % ch].push(*s);
        }
        chunk.commit_all();
        for (w, buf) in writers.iter_mut().zip(&bufs) {
            w.write(buf)?;
        }
        done += frames as u64;
    }
    let mut gaps = Vec::new();
    let first_drop = capture.stats.first_drop_at.load(Ordering::Relaxed);
    if first_drop < done {
        gaps.push(Gap {
            at_sample: first_drop,
            frames_lost: capture.stats.dropped.load(Ordering::Relaxed),
            cause: "ring overflow (the writer fell behind)",
        });
    }
    let mut files = Vec::with_capacity(ch);
    for (i, w) in writers.into_iter().enumerate() {
        let (path, samples) = w.finish()?;
        files.push(FileEntry {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            channel: i as u16 + 1,
            name: spec.channel_names[i].clone(),
            first_sample: 0,
            samples,
            sha256: sha256_file(&path)?,
        });
    }
    crate::record::sync_dir(&dir)?;
    let manifest = Manifest {
        take_id: spec.take_id.clone(),
        agent_version: crate::build_info::VERSION,
        started_at,
        finished_at: crate::util::now_iso8601(),
        device: spec.device.clone(),
        sample_rate: capture.sample_rate,
        channels: capture.channels,
        capture_format: capture.format.to_string(),
        format: "flac",
        bits_per_sample: 24,
        frames: done,
        files,
        gaps,
        xruns: capture.stats.xruns.load(Ordering::Relaxed),
    };
    let path = dir.join("manifest.json");
    atomic_write(&path, &serde_json::to_vec_pretty(&manifest)?, 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((dir, manifest))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(super::slug("Kick In / Sub"), "Kick_In___Sub");
        assert_eq!(super::slug("../etc"), "etc");
    }
}
