//! A take: the writer side of one recording. It receives interleaved
//! blocks (from whoever reads the capture ring), feeds the segment's
//! writers, syncs on a bounded cadence, rolls segments over, watches the
//! disk and keeps the manifest current.
//!
//! Owned by one (non-realtime) writer thread. Layout of a take directory
//! (segment numbers from 001):
//! ```text
//! <output>/<take-id>/01-<name>-s001.flac … NN-<name>-s001.flac   (flac, wav)
//! <output>/<take-id>/<take-id>-s001.w64                          (w64)
//! <output>/<take-id>/manifest.json
//! <output>/<take-id>/.lock          (flock held while the take records)
//! <output>/<take-id>/.reserve       (space for the last writes, see `reserve`)
//! ```
//! Consecutive segments are sample-continuous: concatenated, each channel
//! equals the input (a gap — device lost, overflow — is in the manifest).
//!
//! A closed segment is hashed on the sealer's thread (`seal`): reading
//! gigabytes back must not keep this thread from the capture ring.
//!
//! Durability: every `sync_frames` (0.5 s of audio) the open files are
//! flushed and fsynced; the manifest (rewritten whole at start and at each
//! segment change) lists the open files, so `recover` can repair them after
//! a crash. At most 0.5 s plus one encoder block is at risk.
//!
//! Ending: `finish` closes every file into the room each holds past its
//! end (see `tail`; a file whose close fails is repaired as after a crash,
//! never dropped) and writes the final manifest into the space reserve's
//! own blocks (see `reserve`), so a disk filled from outside cannot stop
//! either. It always returns the final manifest; whether it reached the
//! disk is said beside it (see `Finished`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::disk;
use super::disk::DiskGuard;
use super::encoder::Container;
use super::lock::TakeLock;
use super::manifest::{FileEntry, Gap, Manifest, Marker, Recovery, TakeStatus};
use super::reserve::{self, Reserve};
use super::seal::{Sealed, Sealer};
use super::segment::{Layout, Segment};

/// Largest WAV data size we let a segment reach (4 GiB less 1 MiB for headers).
const WAV_MAX_DATA: u64 = (4 << 30) - (1 << 20);
/// Fewest wall time between two syncs.
const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How often free space is checked.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct TakeSpec {
    pub take_id: String,
    /// The take directory is `<output>/<take_id>`.
    pub output: PathBuf,
    pub container: Container,
    /// Longest segment, in frames.
    pub segment_frames: u64,
    /// One name per channel (file names and metadata).
    pub channel_names: Vec<String>,
    pub device: String,
    pub disk: DiskGuard,
    pub sample_rate: u32,
    /// The device's sample format (for the manifest).
    pub capture_format: String,
    /// The take this one continues (see `take/resume.rs`).
    pub continues: Option<String>,
    /// How many threads encode (`Auto`: more only when one is not enough).
    pub threads: super::spread::Threads,
    /// The clock's state at the start (its `started_at_ms` is set here).
    pub clock: Option<super::manifest::ClockAtStart>,
    /// 1-based device channels recorded, when not the first N in order.
    pub device_channels: Vec<u16>,
    /// The controller's job the take serves.
    pub job_id: Option<String>,
    /// When the take ends by itself (the node's clock, ms; see `Manifest`).
    pub ends_at_ms: Option<u64>,
    /// The console and its channels' names at the start (see `console/`).
    pub console: Option<super::manifest::ConsoleAtStart>,
}

/// What a take reports while it records (the daemon makes events of them).
#[derive(Debug, Clone)]
pub enum TakeEvent {
    SegmentClosed { segment: u32, files: Vec<FileEntry> },
    DiskLow { free_bytes: u64, path: PathBuf },
}

/// Why `write` asks the caller to end the take.
#[derive(Debug, Clone)]
pub struct MustStop(pub String);

/// How a take ended: what ended it (`endedBy` in the manifest: `duration`,
/// `controller`, `SIGINT`, `SIGTERM`, `shutdown`, `disk`, `error`, …), and
/// why, when it ended before it was meant to (status `stopped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub by: String,
    pub early: Option<String>,
}

impl Ending {
    /// Ended as planned (status `complete`).
    pub fn asked(by: &str) -> Self {
        Self {
            by: by.to_owned(),
            early: None,
        }
    }

    /// Ended before it was meant to (status `stopped`, with the reason).
    pub fn early(by: &str, why: impl Into<String>) -> Self {
        Self {
            by: by.to_owned(),
            early: Some(why.into()),
        }
    }
}

/// What `finish` leaves: the final manifest, and whether it could be
/// written (if not, the take directory still says `recording` and the
/// next start's recovery finishes it; every file is closed already).
#[derive(Debug)]
pub struct Finished {
    pub manifest: Manifest,
    pub persisted: anyhow::Result<()>,
}

pub struct Take {
    spec: TakeSpec,
    layout: Layout,
    manifest: Manifest,
    seg: Option<Segment>,
    limit: u64,
    done: u64,
    synced: u64,
    sync_frames: u64,
    last_sync: std::time::Instant,
    guard: disk::Watch,
    /// Hashes closed segments on its own thread (see `seal`).
    sealer: Sealer,
    /// Room for the final manifest (see `reserve`).
    reserve: Reserve,
    /// Files per segment (the reserve holds an entry for each).
    per_segment: usize,
    /// Set when the reserve could not grow: the take must stop.
    short: Option<String>,
    /// Files whose close failed, and what was done to each.
    repairs: Vec<String>,
    _lock: TakeLock,
}

impl Take {
    /// Creates the take directory, checks the disk, writes the first
    /// manifest and opens segment 1. A take that cannot start leaves
    /// nothing behind (no empty take directory).
    pub fn start(spec: TakeSpec) -> anyhow::Result<Self> {
        if spec.channel_names.is_empty() {
            bail!("a take needs at least one channel");
        }
        let dir = spec.output.join(&spec.take_id);
        if dir.join(super::manifest::FILE_NAME).exists() {
            bail!(
                "take {} already exists in {}: choose another take id",
                spec.take_id,
                spec.output.display()
            );
        }
        std::fs::create_dir_all(&spec.output)
            .with_context(|| format!("creating {}", spec.output.display()))?;
        disk::check_start(&spec.output, &spec.disk)?;
        let created = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating take directory {}", dir.display()));
            }
        };
        Self::start_in(spec, dir.clone()).inspect_err(|_| {
            if created {
                remove_unstarted(&dir);
            }
        })
    }

    fn start_in(spec: TakeSpec, dir: PathBuf) -> anyhow::Result<Self> {
        let ch = spec.channel_names.len();
        let lock = TakeLock::acquire(&dir)?;
        let per_file = if spec.container.per_channel() {
            1
        } else {
            ch as u16
        };
        let per_segment = if spec.container.per_channel() { ch } else { 1 };
        let reserve = Reserve::make(&dir, reserve::size_for(per_segment, 0))
            .context("no room for the take's space reserve: free some space or record elsewhere")?;
        let fmt_limit = match spec.container {
            Container::Wav => WAV_MAX_DATA / spec.container.frame_bytes(per_file),
            Container::Flac | Container::W64 => u64::MAX,
        };
        let started = time::OffsetDateTime::now_utc();
        let layout = Layout {
            dir: dir.clone(),
            take_id: spec.take_id.clone(),
            container: spec.container,
            channel_names: spec.channel_names.clone(),
            console: spec.console.clone(),
            rate: spec.sample_rate,
            started,
            threads: spec.threads,
            full: Default::default(),
        };
        let manifest = Manifest {
            take_id: spec.take_id.clone(),
            status: TakeStatus::Recording,
            stop_reason: None,
            ended_by: None,
            agent_version: crate::build_info::VERSION.to_owned(),
            started_at: crate::util::iso8601(started.unix_timestamp()),
            finished_at: String::new(),
            device: spec.device.clone(),
            sample_rate: spec.sample_rate,
            channels: ch as u16,
            capture_format: spec.capture_format.clone(),
            format: spec.container,
            bits_per_sample: 24,
            frames: 0,
            segments: 0,
            files: Vec::new(),
            open_files: Vec::new(),
            gaps: Vec::new(),
            markers: Vec::new(),
            xruns: 0,
            recovery: None,
            transfer: Default::default(),
            segment_frames: spec.segment_frames,
            continues: spec.continues.clone(),
            device_channels: spec.device_channels.clone(),
            job_id: spec.job_id.clone(),
            ends_at_ms: spec.ends_at_ms,
            console: spec.console.clone(),
            renames: Vec::new(),
            clock: spec.clock.map(|c| super::manifest::ClockAtStart {
                started_at_ms: (started.unix_timestamp_nanos() / 1_000_000) as u64,
                ..c
            }),
        };
        let mut take = Self {
            limit: spec.segment_frames.clamp(1, fmt_limit),
            sync_frames: u64::from(spec.sample_rate / 2).max(1),
            guard: disk::Watch::new(&dir, &spec.disk),
            sealer: Sealer::start(&spec.take_id)?,
            spec,
            layout,
            manifest,
            seg: None,
            done: 0,
            synced: 0,
            last_sync: std::time::Instant::now(),
            reserve,
            per_segment,
            short: None,
            repairs: Vec::new(),
            _lock: lock,
        };
        take.open_segment()?;
        Ok(take)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.layout.dir
    }

    /// Frames written so far (the take position).
    pub fn position(&self) -> u64 {
        self.done
    }

    pub fn segments(&self) -> u32 {
        self.manifest.segments
    }

    pub fn started_at(&self) -> time::OffsetDateTime {
        self.layout.started
    }

    fn open_segment(&mut self) -> anyhow::Result<()> {
        let number = self.manifest.segments + 1;
        let plan = self.layout.plan(number, self.done);
        self.manifest.segments = number;
        self.manifest.open_files = plan.clone();
        let opened = self
            .manifest
            .write(&self.layout.dir)
            .and_then(|_| self.layout.open(plan.clone()));
        match opened {
            Ok(seg) => {
                self.seg = Some(seg);
                Ok(())
            }
            Err(e) => {
                // Nothing was recorded into this segment: it does not exist.
                for f in &plan {
                    let _ = std::fs::remove_file(self.layout.dir.join(&f.file));
                }
                self.manifest.segments = number - 1;
                self.manifest.open_files.clear();
                Err(e)
            }
        }
    }

    /// Finishes the open segment's files (final headers, fsync), lists them
    /// in the manifest and hands them to the sealer; `SegmentClosed` follows
    /// once they are hashed (see `take_sealed`). A file whose close fails
    /// (disk full, I/O error) is repaired as after a crash and listed with
    /// the audio it holds; the error says which files that was.
    fn close_segment(&mut self) -> anyhow::Result<()> {
        self.close_segment_files(true)
    }

    /// `close_segment`; `write_manifest` false leaves the manifest to the
    /// caller (`finish` writes only the final one, through the reserve).
    fn close_segment_files(&mut self, write_manifest: bool) -> anyhow::Result<()> {
        let Some(seg) = self.seg.take() else {
            return Ok(());
        };
        let number = seg.number;
        let (mut files, failed) = seg.close(&self.layout.dir);
        let mut problems = Vec::new();
        for (entry, err) in failed {
            problems.push(format!("{}: {err:#}", entry.file));
            match super::recover::repair_file(&self.layout.dir, self.spec.container, entry) {
                Ok((kept, lines)) => {
                    self.repairs.extend(lines);
                    files.extend(kept);
                }
                Err(e) => self.repairs.push(format!("repair failed: {e:#}")),
            }
        }
        files.sort_by_key(|f| f.channels.first().copied());
        self.manifest.files.extend(files.iter().cloned());
        self.manifest.frames = super::recover::take_frames(&self.manifest.files);
        self.manifest.open_files.clear();
        let written = if write_manifest {
            self.manifest.write(&self.layout.dir)
        } else {
            Ok(0)
        };
        let frames = files.iter().map(|f| f.samples).max().unwrap_or(0);
        tracing::info!(take = %self.spec.take_id, segment = number, frames, "segment closed");
        self.sealer.submit(number, self.layout.dir.clone(), files);
        if write_manifest && let Ok(bytes) = &written {
            let want = reserve::size_for(self.per_segment, *bytes);
            if let Err(e) = self.reserve.grow(want) {
                self.short = Some(format!("{e:#}"));
            }
        }
        if !problems.is_empty() {
            bail!(
                "{} file(s) of segment {number} could not be closed normally and were repaired as after a crash: {}",
                problems.len(),
                problems.join("; ")
            );
        }
        written.map(drop)
    }

    /// Puts the hashes of sealed segments into the manifest and reports
    /// each segment as closed.
    fn take_sealed(
        &mut self,
        sealed: Vec<Sealed>,
        events: &mut Vec<TakeEvent>,
    ) -> anyhow::Result<()> {
        if sealed.is_empty() {
            return Ok(());
        }
        self.note_sealed(sealed, events);
        self.manifest.write(&self.layout.dir).map(drop)
    }

    /// `take_sealed` without writing the manifest.
    fn note_sealed(&mut self, sealed: Vec<Sealed>, events: &mut Vec<TakeEvent>) {
        for s in sealed {
            for (file, why) in &s.failed {
                tracing::error!(take = %self.spec.take_id, file = %file, error = %why, "a closed file could not be read back to hash it; its manifest entry has no sha256");
            }
            for f in &s.files {
                if let Some(m) = self.manifest.files.iter_mut().find(|m| m.file == f.file) {
                    m.sha256.clone_from(&f.sha256);
                }
            }
            events.push(TakeEvent::SegmentClosed {
                segment: s.segment,
                files: s.files,
            });
        }
    }

    /// Reports the segments hashed since the last call. Never blocks: the
    /// engine calls it between blocks and while no audio comes (a device
    /// gone for a while must not hold back the segment it closed).
    pub fn poll(&mut self, events: &mut Vec<TakeEvent>) -> anyhow::Result<()> {
        let sealed = self.sealer.ready();
        self.take_sealed(sealed, events)
    }

    /// Appends interleaved whole frames. Events (segment closed, disk low)
    /// go to `events`; `Ok(Some(MustStop))` asks the caller to `finish`.
    pub fn write(
        &mut self,
        mut block: &[i32],
        events: &mut Vec<TakeEvent>,
    ) -> anyhow::Result<Option<MustStop>> {
        let ch = self.spec.channel_names.len();
        self.poll(events)?;
        if let Some(stop) = self.check_disk(events) {
            return Ok(Some(stop));
        }
        while !block.is_empty() {
            if self.seg.is_none() {
                self.open_segment()?;
            }
            let Some(seg) = self.seg.as_mut() else { break };
            let room = (self.limit - seg.frames) as usize;
            let n = (block.len() / ch).min(room);
            seg.write(ch, &block[..n * ch])?;
            block = &block[n * ch..];
            self.done += n as u64;
            if seg.frames >= self.limit {
                self.close_segment()?;
                self.synced = self.done;
            }
        }
        if let Some(why) = self.short.take() {
            return Ok(Some(MustStop(format!(
                "the disk has no room left for the take's space reserve ({why})"
            ))));
        }
        if let Some(why) = self.layout.full.get() {
            return Ok(Some(MustStop(why.to_owned())));
        }
        // NOTE: 0.5 s of audio, but not more often than every 100 ms of
        // wall time: a take catching up on a backlog (or `encode`) would
        // otherwise fsync hundreds of times a second for nothing.
        if self.done - self.synced >= self.sync_frames
            && self.last_sync.elapsed() >= MIN_SYNC_INTERVAL
            && let Some(seg) = self.seg.as_mut()
        {
            seg.sync()?;
            self.synced = self.done;
            self.last_sync = std::time::Instant::now();
        }
        Ok(None)
    }

    fn check_disk(&mut self, events: &mut Vec<TakeEvent>) -> Option<MustStop> {
        match self.guard.poll(DISK_CHECK_EVERY)? {
            disk::Low::Warn(free) => {
                tracing::warn!(take = %self.spec.take_id, free_mb = free >> 20, dir = %self.layout.dir.display(), "disk space is low");
                events.push(TakeEvent::DiskLow {
                    free_bytes: free,
                    path: self.layout.dir.clone(),
                });
                None
            }
            disk::Low::Stop(free) => Some(MustStop(format!(
                "disk almost full: {} MiB free on {}, below storage.stop_free_mb ({} MiB)",
                free >> 20,
                self.layout.dir.display(),
                self.spec.disk.stop_free_bytes >> 20
            ))),
        }
    }

    /// Audio stopped coming (device lost): closes the open segment so all
    /// that was captured is final; the next write opens a new segment.
    pub fn suspend(&mut self, events: &mut Vec<TakeEvent>) -> anyhow::Result<()> {
        self.close_segment()?;
        self.synced = self.done;
        self.poll(events)
    }

    /// `frames_lost` frames are missing at the current position.
    pub fn note_gap(&mut self, frames_lost: u64, cause: &str) {
        self.manifest.gaps.push(Gap {
            at_sample: self.done,
            frames_lost,
            cause: cause.to_owned(),
        });
    }

    /// Records an xrun whose missing frames belong at take position `at`.
    pub fn xrun(&mut self, at: u64, frames_lost: u64, cause: &str) {
        self.manifest.xruns += 1;
        if frames_lost > 0 {
            self.manifest.gaps.push(Gap {
                at_sample: at,
                frames_lost,
                cause: cause.to_owned(),
            });
        }
    }

    /// Records receipts for this take's closed files (see `receipt`).
    pub fn receive(
        &mut self,
        receipts: &[rakkr_protocol::FileReceipt],
    ) -> anyhow::Result<super::receipt::Outcome> {
        let (out, changed) =
            super::receipt::apply(&mut self.manifest, receipts, &crate::util::now_iso8601());
        if changed {
            self.manifest.write(&self.layout.dir)?;
        }
        Ok(out)
    }

    /// Drops gaps at or past the take's last frame. A loss is recorded
    /// where the writer will meet it (the ring position of the hole),
    /// which can be ahead of what it has written when it is behind; a take
    /// that ends first never has that hole (seen under heavy load: a gap
    /// listed 88,000 frames past the end of a stopped take).
    fn forget_losses_after_the_end(&mut self) {
        let end = self.done;
        let before = self.manifest.gaps.len();
        self.manifest.gaps.retain(|g| g.at_sample < end);
        let forgotten = (before - self.manifest.gaps.len()) as u64;
        if forgotten > 0 {
            tracing::info!(take = %self.spec.take_id, forgotten, "losses after the take's end are not the take's");
        }
        self.manifest.xruns = self.manifest.xruns.saturating_sub(forgotten);
    }

    /// A console channel recorded by this take was renamed (kept in the
    /// manifest, written at the next segment close and at the end).
    pub fn rename(&mut self, r: super::manifest::Rename) {
        self.manifest.renames.push(r);
    }

    pub fn mark(&mut self, at_sample: u64, label: &str) {
        self.manifest.markers.push(Marker {
            at_sample,
            label: label.to_owned(),
        });
    }

    /// Closes every file and writes the final manifest: status `complete`,
    /// or `stopped` with the reason when `ending` is early or a file could
    /// not be closed normally. Needs no new space on the disk: the files end
    /// in the room they hold (`tail`), the manifest is written into the
    /// reserve (`reserve`). Always returns the final manifest; `persisted`
    /// says whether it is on disk.
    pub fn finish(mut self, ending: Ending, events: &mut Vec<TakeEvent>) -> Finished {
        let closed = self.close_segment_files(false);
        // Every segment's hashes are in the final manifest.
        let sealed = self.sealer.wait_all();
        self.note_sealed(sealed, events);
        let mut reason = ending.early;
        if let Err(e) = closed {
            let what = format!("closing the last segment: {e:#}");
            reason = Some(match reason {
                Some(r) => format!("{r}; {what}"),
                None => what,
            });
        }
        if !self.repairs.is_empty() {
            self.manifest.recovery = Some(Recovery {
                recovered_at: crate::util::now_iso8601(),
                segment: self.manifest.segments,
                frames_saved: self.manifest.frames,
                actions: std::mem::take(&mut self.repairs),
            });
        }
        if let Some(reason) = &reason {
            tracing::warn!(take = %self.spec.take_id, reason = %reason, "take stopped early");
        }
        self.manifest.status = if reason.is_some() {
            TakeStatus::Stopped
        } else {
            TakeStatus::Complete
        };
        self.manifest.stop_reason = reason;
        self.manifest.ended_by = Some(ending.by);
        self.manifest.finished_at = crate::util::now_iso8601();
        self.forget_losses_after_the_end();
        let persisted = self.write_final();
        Finished {
            manifest: self.manifest,
            persisted,
        }
    }
}

impl Take {
    /// Writes the final manifest through the reserve; failing that (the
    /// manifest outgrew it, or the filesystem refused), the plain way.
    fn write_final(&mut self) -> anyhow::Result<()> {
        let bytes = self.manifest.to_bytes()?;
        let target = self.layout.dir.join(super::manifest::FILE_NAME);
        let reserve = std::mem::replace(&mut self.reserve, Reserve::none());
        match reserve.into_manifest(&target, &bytes, 0o644) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(take = %self.spec.take_id, error = format!("{e:#}"), "writing the final manifest through the reserve failed; writing it the plain way");
                self.manifest.write(&self.layout.dir).map(drop)
            }
        }
    }
}

/// Removes what a take that could not start created (it recorded nothing).
fn remove_unstarted(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the directory of a take that did not start");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::take::encoder::tests::signal;

    pub(crate) fn spec(dir: &std::path::Path, segment_frames: u64) -> TakeSpec {
        TakeSpec {
            take_id: "t1".into(),
            output: dir.to_owned(),
            container: Container::Flac,
            segment_frames,
            channel_names: vec!["Kick".into(), "Snare".into(), "Vox".into()],
            device: "test".into(),
            disk: DiskGuard {
                min_free_bytes: 0,
                warn_free_bytes: 0,
                stop_free_bytes: 0,
            },
            sample_rate: 48_000,
            capture_format: "i32".into(),
            threads: crate::take::spread::Threads::Auto,
            clock: None,
            continues: None,
            device_channels: Vec::new(),
            job_id: None,
            ends_at_ms: None,
            console: None,
        }
    }

    /// Three segments of three channels in take `t1` under `dir`; returns
    /// the events and manifest.
    pub(crate) fn record_into(dir: &std::path::Path) -> (Vec<TakeEvent>, Manifest) {
        record(dir)
    }

    /// Three segments of three channels; returns the events and manifest.
    fn record(dir: &std::path::Path) -> (Vec<TakeEvent>, Manifest) {
        let mut take = Take::start(spec(dir, 10_000)).unwrap();
        let mut events = Vec::new();
        for block in signal(3, 25_000).chunks(3 * 4_000) {
            assert!(take.write(block, &mut events).unwrap().is_none());
        }
        let f = take.finish(Ending::asked("duration"), &mut events);
        f.persisted.unwrap();
        (events, f.manifest)
    }

    #[test]
    fn a_loss_past_the_end_of_a_stopped_take_is_not_listed_as_its_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut take = Take::start(spec(dir.path(), 100_000)).unwrap();
        let mut events = Vec::new();
        take.write(&signal(3, 9_000), &mut events).unwrap();
        take.xrun(4_000, 256, "device xrun");
        // The writer is behind: the ring lost audio it has not reached.
        take.xrun(90_000, 17_664, "ring overflow (the writer fell behind)");
        let f = take.finish(Ending::asked("controller"), &mut events);
        f.persisted.unwrap();
        assert_eq!(f.manifest.frames, 9_000);
        assert_eq!(f.manifest.gaps.len(), 1, "{:?}", f.manifest.gaps);
        assert_eq!(f.manifest.gaps[0].at_sample, 4_000);
        assert_eq!(f.manifest.xruns, 1);
        assert_eq!(
            Manifest::read(&dir.path().join("t1")).unwrap().gaps,
            f.manifest.gaps
        );
    }

    #[test]
    fn closed_segments_are_reported_with_the_hashes_of_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let (events, m) = record(dir.path());
        let closed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                TakeEvent::SegmentClosed { segment, files } => Some((*segment, files)),
                TakeEvent::DiskLow { .. } => None,
            })
            .collect();
        assert_eq!(
            closed.iter().map(|c| c.0).collect::<Vec<_>>(),
            [1, 2, 3],
            "every segment reported once, in order"
        );
        assert_eq!(m.files.len(), 9);
        let take_dir = dir.path().join("t1");
        for (_, files) in &closed {
            for f in *files {
                let on_disk = crate::util::sha256_file(&take_dir.join(&f.file)).unwrap().0;
                assert_eq!(f.sha256, on_disk, "{}", f.file);
                let listed = m.files.iter().find(|e| e.file == f.file).unwrap();
                assert_eq!(listed.sha256, on_disk, "manifest entry of {}", f.file);
            }
        }
        let written = Manifest::read(&take_dir).unwrap();
        assert_eq!(written.files, m.files);
        assert_eq!(written.status, TakeStatus::Complete);
    }

    #[test]
    fn a_segment_closed_when_audio_stops_is_reported_without_more_audio() {
        let dir = tempfile::tempdir().unwrap();
        let mut take = Take::start(spec(dir.path(), 1_000_000)).unwrap();
        let mut events = Vec::new();
        take.write(&signal(3, 5_000), &mut events).unwrap();
        take.suspend(&mut events).unwrap();
        // Bounded: 400 polls, 10 ms apart.
        for _ in 0..400 {
            if !events.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            take.poll(&mut events).unwrap();
        }
        let [TakeEvent::SegmentClosed { segment: 1, files }] = events.as_slice() else {
            panic!("expected segment 1 closed, got {events:?}");
        };
        assert_eq!(files.len(), 3);
        assert!(
            files
                .iter()
                .all(|f| f.sha256.len() == 64 && f.samples == 5_000)
        );
    }

    #[test]
    fn recovery_hashes_closed_files_the_sealer_had_not_reached() {
        let dir = tempfile::tempdir().unwrap();
        let (_, done) = record(dir.path());
        let take_dir = dir.path().join("t1");
        // A crash right after segment 3 closed: listed, not hashed yet.
        let mut m = done.clone();
        m.status = TakeStatus::Recording;
        for f in m.files.iter_mut().filter(|f| f.segment == 3) {
            f.sha256.clear();
        }
        m.write(&take_dir).unwrap();
        let r = crate::take::recover::recover_take(&take_dir)
            .unwrap()
            .expect("the take needed recovery");
        assert_eq!(r.manifest.files, done.files, "every hash is back");
        assert_eq!(r.manifest.frames, done.frames);
        assert_eq!(r.manifest.segments, 3, "no open segment: none dropped");
        let actions = &r.manifest.recovery.as_ref().unwrap().actions;
        assert_eq!(
            actions.iter().filter(|a| a.contains("hashed now")).count(),
            3,
            "{actions:?}"
        );
    }
}
