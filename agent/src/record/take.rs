//! A take: read the ring, feed the writers, roll segments over, close and
//! hash every file, write the manifest.
//!
//! Runs on its own (non-realtime) writer thread; the capture callback only
//! fills the ring. Layout of a take directory (segment numbers from 001):
//! ```text
//! <output>/<take-id>/01-<name>-s001.flac … NN-<name>-s001.flac   (flac, wav)
//! <output>/<take-id>/<take-id>-s001.w64                          (w64)
//! <output>/<take-id>/manifest.json
//! ```
//! Consecutive segments are sample-continuous: concatenated, each channel
//! equals the input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rakkr_protocol::fsutil::atomic_write;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::encoder::{Bext, Container, TrackWriter};
use crate::capture::Capture;

/// Frames moved from the ring per step.
const BLOCK_FRAMES: usize = 4096;
/// A device silent this long (no frames at all) fails the take.
const NO_AUDIO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest WAV data size we let a segment reach (4 GiB less 1 MiB for headers).
const WAV_MAX_DATA: u64 = (4 << 30) - (1 << 20);

#[derive(Debug, Clone)]
pub struct TakeSpec {
    pub take_id: String,
    /// The take directory is `<output>/<take_id>`.
    pub output: PathBuf,
    pub container: Container,
    /// Stop after this many frames (`None`: until `stop` is set).
    pub frames: Option<u64>,
    /// Longest segment, in frames.
    pub segment_frames: u64,
    /// One name per channel (file names and metadata).
    pub channel_names: Vec<String>,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// File name inside the take directory.
    pub file: String,
    /// 1-based segment number.
    pub segment: u32,
    /// 1-based channel indices held by the file, in order.
    pub channels: Vec<u16>,
    pub name: String,
    /// Take position (frames) of the file's first sample.
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
    pub format: Container,
    pub bits_per_sample: u8,
    pub frames: u64,
    pub segments: u32,
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

/// The open files of one segment.
struct Segment {
    number: u32,
    first_frame: u64,
    frames: u64,
    /// (writer, channels it holds, name)
    tracks: Vec<(TrackWriter, Vec<u16>, String)>,
}

struct Writer<'a> {
    spec: &'a TakeSpec,
    dir: PathBuf,
    rate: u32,
    channels: u16,
    started: time::OffsetDateTime,
    limit: u64,
    files: Vec<FileEntry>,
}

impl Writer<'_> {
    fn open_segment(&self, number: u32, first_frame: u64) -> anyhow::Result<Segment> {
        let spec = self.spec;
        let ext = spec.container.extension();
        let at =
            self.started + time::Duration::seconds_f64(first_frame as f64 / f64::from(self.rate));
        let midnight = at.replace_time(time::Time::MIDNIGHT);
        let bext = Bext {
            description: format!("Rakkr take {} segment {number}", spec.take_id),
            origination: at,
            time_reference: ((at - midnight).as_seconds_f64() * f64::from(self.rate)).round()
                as u64,
        };
        let bext = (spec.container == Container::Wav).then_some(&bext);
        let mut tracks = Vec::new();
        if spec.container.per_channel() {
            for (i, name) in spec.channel_names.iter().enumerate() {
                let file = format!("{:02}-{}-s{number:03}.{ext}", i + 1, slug(name));
                let w = TrackWriter::create(
                    &self.dir.join(&file),
                    spec.container,
                    1,
                    self.rate,
                    name,
                    bext,
                )?;
                tracks.push((w, vec![i as u16 + 1], name.clone()));
            }
        } else {
            let file = format!("{}-s{number:03}.{ext}", slug(&spec.take_id));
            let w = TrackWriter::create(
                &self.dir.join(&file),
                spec.container,
                self.channels,
                self.rate,
                &spec.take_id,
                bext,
            )?;
            tracks.push((w, (1..=self.channels).collect(), spec.take_id.clone()));
        }
        Ok(Segment {
            number,
            first_frame,
            frames: 0,
            tracks,
        })
    }

    fn close_segment(&mut self, seg: Segment) -> anyhow::Result<()> {
        for (w, channels, name) in seg.tracks {
            let (path, samples) = w.finish()?;
            self.files.push(FileEntry {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                segment: seg.number,
                channels,
                name,
                first_sample: seg.first_frame,
                samples,
                sha256: sha256_file(&path)?,
            });
        }
        crate::record::sync_dir(&self.dir)?;
        tracing::info!(take = %self.spec.take_id, segment = seg.number, frames = seg.frames, "segment closed");
        Ok(())
    }

    /// Writes interleaved `block` into the segment's files.
    fn write(
        &self,
        seg: &mut Segment,
        block: &[i32],
        scratch: &mut [Vec<i32>],
    ) -> anyhow::Result<()> {
        let ch = usize::from(self.channels);
        if self.spec.container.per_channel() {
            for buf in scratch.iter_mut() {
                buf.clear();
            }
            for (i, s) in block.iter().enumerate() {
                scratch[i % ch].push(*s);
            }
            for ((w, _, _), buf) in seg.tracks.iter_mut().zip(scratch.iter()) {
                w.write(buf)?;
            }
        } else {
            seg.tracks[0].0.write(block)?;
        }
        seg.frames += (block.len() / ch) as u64;
        Ok(())
    }
}

/// Records one take from a running capture. Returns the take directory and
/// the manifest (also written to `manifest.json` there).
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
    let fmt_limit = match spec.container {
        Container::Wav => {
            WAV_MAX_DATA
                / spec.container.frame_bytes(if spec.container.per_channel() {
                    1
                } else {
                    capture.channels
                })
        }
        Container::Flac | Container::W64 => u64::MAX,
    };
    let started = time::OffsetDateTime::now_utc();
    let mut w = Writer {
        spec,
        dir: dir.clone(),
        rate: capture.sample_rate,
        channels: capture.channels,
        started,
        limit: spec.segment_frames.clamp(1, fmt_limit),
        files: Vec::new(),
    };
    let mut seg = w.open_segment(1, 0)?;
    let mut scratch: Vec<Vec<i32>> = (0..ch).map(|_| Vec::with_capacity(BLOCK_FRAMES)).collect();
    let mut done: u64 = 0;
    let mut last_audio = Instant::now();
    loop {
        let remaining = spec.frames.map_or(u64::MAX, |f| f - done);
        if remaining == 0 || (stop.load(Ordering::Relaxed) && capture.consumer.slots() < ch) {
            break;
        }
        let room = w.limit - seg.frames;
        let frames = (capture.consumer.slots() / ch)
            .min(BLOCK_FRAMES)
            .min(remaining.min(room) as usize);
        if frames == 0 {
            if room == 0 {
                let next = seg.number + 1;
                w.close_segment(seg)?;
                seg = w.open_segment(next, done)?;
                continue;
            }
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
        // NOTE: the ring's size and every read and write are whole frames,
        // so both halves of a wrapped chunk hold whole frames.
        w.write(&mut seg, a, &mut scratch)?;
        if !b.is_empty() {
            w.write(&mut seg, b, &mut scratch)?;
        }
        chunk.commit_all();
        done += frames as u64;
    }
    let segments = seg.number;
    w.close_segment(seg)?;
    let mut gaps = Vec::new();
    let first_drop = capture.stats.first_drop_at.load(Ordering::Relaxed);
    if first_drop < done {
        gaps.push(Gap {
            at_sample: first_drop,
            frames_lost: capture.stats.dropped.load(Ordering::Relaxed),
            cause: "ring overflow (the writer fell behind)",
        });
    }
    let manifest = Manifest {
        take_id: spec.take_id.clone(),
        agent_version: crate::build_info::VERSION,
        started_at: crate::util::iso8601(started.unix_timestamp()),
        finished_at: crate::util::now_iso8601(),
        device: spec.device.clone(),
        sample_rate: capture.sample_rate,
        channels: capture.channels,
        capture_format: capture.format.to_string(),
        format: spec.container,
        bits_per_sample: 24,
        frames: done,
        segments,
        files: w.files,
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
