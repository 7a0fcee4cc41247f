//! The take manifest (`manifest.json` in the take directory).
//!
//! It is written when the take starts (`status: "recording"`), rewritten
//! whole (atomically) at every segment close, and a last time when the take
//! ends. A manifest still saying `recording` with no process holding the
//! take's lock is what `recover` repairs after a crash or power cut.

use std::path::Path;

use anyhow::Context;
use rakkr_protocol::fsutil::atomic_write;
use serde::{Deserialize, Serialize};

use super::encoder::Container;

pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeStatus {
    /// Being recorded (or the recorder died: see `recover`).
    Recording,
    /// Ended as asked (duration reached or stopped).
    Complete,
    /// Ended early by the recorder itself (disk full, device gone); every
    /// file is closed and valid. `stopReason` says why.
    Stopped,
    /// The recorder died during the take; the open segment was repaired.
    Recovered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// SHA-256 of the closed file (empty while it is open and until the
    /// sealer has read it back; see `seal`).
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// Position in the take (frames) where audio is missing.
    pub at_sample: u64,
    pub frames_lost: u64,
    pub cause: String,
}

/// A label set at a sample position (the controller's `mark`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub at_sample: u64,
    pub label: String,
}

/// The console, as it was when the take started (see `console/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleAtStart {
    pub family: String,
    pub model: String,
    pub name: String,
    pub firmware: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub address: String,
    /// The take's channels 1, 2, …: the console channel each carries and
    /// its name then (`null`: none known).
    pub channels: Vec<ConsoleChannel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleChannel {
    /// 1-based take channel.
    pub channel: u16,
    pub console_channel: Option<u16>,
    pub name: Option<String>,
}

/// A console channel renamed while the take recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rename {
    /// Take position (frames) where the console said so.
    pub at_sample: u64,
    /// 1-based take channel.
    pub channel: u16,
    pub console_channel: u16,
    pub from: String,
    pub to: String,
}

/// What `recover` did to the open segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub recovered_at: String,
    pub segment: u32,
    /// Frames of the open segment that were saved.
    pub frames_saved: u64,
    /// What was done to each file (sizes fixed, torn frame dropped, …).
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub take_id: String,
    pub status: TakeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// What ended the take (`duration`, `controller`, `SIGINT`, `SIGTERM`,
    /// `shutdown`, `disk`, `error`, `update`); absent while recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    pub agent_version: String,
    pub started_at: String,
    /// Empty while recording.
    pub finished_at: String,
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub capture_format: String,
    pub format: Container,
    pub bits_per_sample: u8,
    /// Frames in closed files (the whole take once it has ended).
    pub frames: u64,
    pub segments: u32,
    pub files: Vec<FileEntry>,
    /// Files of the segment being written (`sha256` empty); empty once the
    /// take has ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_files: Vec<FileEntry>,
    pub gaps: Vec<Gap>,
    #[serde(default)]
    pub markers: Vec<Marker>,
    pub xruns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// What the controller holds (see `receipt`).
    #[serde(default, skip_serializing_if = "Transfer::is_empty")]
    pub transfer: Transfer,
    /// Longest segment, in frames (a take that continues this one keeps
    /// it); 0 in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub segment_frames: u64,
    /// The take this one continues: one a crash or power cut interrupted
    /// (see `take/resume.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
    /// The node's clock when the take started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockAtStart>,
    /// 1-based device channels the take's channels 1, 2, … come from,
    /// when not the device's first N in order (several takes at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_channels: Vec<u16>,
    /// The controller's job the take serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// When (the node's clock, ms since the epoch) the take ends by itself
    /// (a duration or an end time); a take that continues it after a crash
    /// ends then too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at_ms: Option<u64>,
    /// The console the node is wired to, when the take started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleAtStart>,
    /// Console channels renamed during the take, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renames: Vec<Rename>,
}

/// The node's clock at a take's start: its wall-clock start to the
/// millisecond, how far it was from the controller's clock (as last
/// measured, `None` without a controller) and whether the kernel said it
/// was synchronised (NTP). Lets the controller line up takes of several
/// nodes and know how far to trust `startedAt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockAtStart {
    pub started_at_ms: u64,
    /// The controller's clock minus ours, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
    /// Round trip of the measurement, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_rtt_ms: Option<u64>,
    /// When the skew was measured (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_measured_at_ms: Option<u64>,
    /// `None`: unknown (the kernel's state could not be read).
    pub synchronized: Option<bool>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Receipts: the files the controller holds, each with the SHA-256 it
/// computed (equal to the file's, or the receipt was refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// File name → its receipt.
    pub received: std::collections::BTreeMap<String, Received>,
}

impl Transfer {
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    pub sha256: String,
    /// When the receipt was recorded (UTC, ISO 8601).
    pub at: String,
}

impl Manifest {
    /// Whether `file` (listed, hashed) has a receipt for its current hash.
    pub fn is_received(&self, f: &FileEntry) -> bool {
        !f.sha256.is_empty()
            && self
                .transfer
                .received
                .get(&f.file)
                .is_some_and(|r| r.sha256 == f.sha256)
    }

    /// Whether the take has ended and every file has a receipt.
    pub fn all_received(&self) -> bool {
        self.status != TakeStatus::Recording
            && !self.files.is_empty()
            && self.files.iter().all(|f| self.is_received(f))
    }
}

impl Manifest {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// The manifest as written to `manifest.json`.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).context("serialising the manifest")
    }

    /// Replaces `manifest.json` in `dir` atomically; returns its size.
    pub fn write(&self, dir: &Path) -> anyhow::Result<u64> {
        let path = dir.join(FILE_NAME);
        let bytes = self.to_bytes()?;
        atomic_write(&path, &bytes, 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(bytes.len() as u64)
    }
}
