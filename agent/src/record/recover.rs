//! Repairs takes that a crash or power cut interrupted.
//!
//! A take needs repair when its manifest still says `recording` and no
//! process holds its lock. Closed segments are complete already (their
//! files were finished and fsynced before the manifest listed them). The
//! open segment's files are cut to the audio they hold completely — WAV/W64
//! sizes fixed, a torn FLAC frame dropped and STREAMINFO's sample count
//! fixed — and to the same length on every channel, then hashed and moved
//! to `files`; closed files the sealer had not hashed yet are hashed too;
//! the manifest says `recovered` and what was done.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::encoder::Container;
use super::lock::TakeLock;
use super::manifest::{FileEntry, Manifest, Recovery, TakeStatus};
use super::segment::sha256_file;
use super::{flacscan, riffscan};

/// What `recover_take` did.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What one open file holds.
enum Held {
    Flac(Vec<flacscan::FrameEnd>),
    Pcm(riffscan::DataChunk, u64),
    /// No usable header: the file was cut while being created.
    Nothing,
}

impl Held {
    fn frames(&self) -> u64 {
        match self {
            Held::Flac(f) => f.last().map_or(0, |f| f.samples),
            Held::Pcm(d, frame_bytes) => d.present / frame_bytes,
            Held::Nothing => 0,
        }
    }
}

fn inspect(path: &Path, container: Container, channels: u16) -> Held {
    let held = match container {
        Container::Flac => flacscan::scan(path).map(Held::Flac),
        Container::Wav | Container::W64 => riffscan::find_data(path, container)
            .map(|d| Held::Pcm(d, container.frame_bytes(channels))),
    };
    held.unwrap_or_else(|e| {
        tracing::warn!(file = %path.display(), error = format!("{e:#}"), "no audio can be saved from this file");
        Held::Nothing
    })
}

/// Cuts the file to `frames` and returns a line for the manifest.
fn cut(path: &Path, container: Container, held: &Held, frames: u64) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match held {
        Held::Flac(ends) => {
            let dropped = ends.last().map_or(0, |l| l.samples) - frames;
            let Some(end) = ends.iter().find(|e| e.samples == frames) else {
                anyhow::bail!("{name}: no frame boundary at sample {frames}");
            };
            flacscan::truncate_at(path, *end)?;
            Ok(format!(
                "{name}: torn tail dropped after the last complete frame, STREAMINFO sample count set to {frames}{}",
                if dropped > 0 {
                    format!(" ({dropped} samples cut to match the other channels)")
                } else {
                    String::new()
                }
            ))
        }
        Held::Pcm(data, frame_bytes) => {
            riffscan::truncate_at(path, container, *data, frames * frame_bytes)?;
            Ok(format!("{name}: header sizes set to {frames} frames"))
        }
        Held::Nothing => Ok(format!("{name}: held no audio")),
    }
}

/// Repairs the take in `dir` if it needs it and nobody records it.
pub fn recover_take(dir: &Path) -> anyhow::Result<Option<Recovered>> {
    let mut m = Manifest::read(dir)?;
    if m.status != TakeStatus::Recording {
        return Ok(None);
    }
    let Some(_lock) = TakeLock::try_acquire(dir)? else {
        return Ok(None);
    };
    let open = std::mem::take(&mut m.open_files);
    // Between two segments (device lost, say) no file is open.
    let had_open = !open.is_empty();
    let files_channels = |e: &FileEntry| e.channels.len() as u16;
    let held: Vec<Held> = open
        .iter()
        .map(|e| inspect(&dir.join(&e.file), m.format, files_channels(e)))
        .collect();
    let frames = held.iter().map(Held::frames).min().unwrap_or(0);
    let mut actions = Vec::new();
    let segment = open.first().map_or(m.segments, |e| e.segment);
    for (mut entry, h) in open.into_iter().zip(&held) {
        let path = dir.join(&entry.file);
        if frames == 0 {
            // Nothing of this segment reached the disk: it never existed.
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing empty {}", path.display()))?;
                actions.push(format!("{}: held no complete audio, removed", entry.file));
            }
            continue;
        }
        actions.push(cut(&path, m.format, h, frames)?);
        entry.samples = frames;
        entry.sha256 = sha256_file(&path)?;
        m.files.push(entry);
    }
    // Segments closed just before the crash may not have been hashed yet
    // (the sealer works behind the writer): their files are final, hash them.
    for entry in m.files.iter_mut().filter(|e| e.sha256.is_empty()) {
        let path = dir.join(&entry.file);
        match sha256_file(&path) {
            Ok(sha) => {
                entry.sha256 = sha;
                actions.push(format!(
                    "{}: closed before the interruption, hashed now",
                    entry.file
                ));
            }
            Err(e) => actions.push(format!("{}: could not be hashed: {e:#}", entry.file)),
        }
    }
    if had_open && frames == 0 && segment == m.segments && m.segments > 1 {
        m.segments -= 1;
    }
    super::sync_dir(dir)?;
    m.frames += frames;
    m.status = TakeStatus::Recovered;
    m.finished_at = last_write(dir, &m.files).unwrap_or_else(crate::util::now_iso8601);
    m.recovery = Some(Recovery {
        recovered_at: crate::util::now_iso8601(),
        segment,
        frames_saved: frames,
        actions,
    });
    m.write(dir)?;
    tracing::warn!(take = %m.take_id, dir = %dir.display(), frames = m.frames, segment, saved = frames, "take recovered after an interrupted recording");
    Ok(Some(Recovered {
        dir: dir.to_owned(),
        manifest: m,
    }))
}

/// When the recording stopped: the newest modification time of its files.
fn last_write(dir: &Path, files: &[FileEntry]) -> Option<String> {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(&f.file)).ok()?.modified().ok())
        .max()
        .map(|t| crate::util::iso8601(time::OffsetDateTime::from(t).unix_timestamp()))
}

/// Repairs every interrupted take directly under `root`. One take's
/// failure is logged and does not stop the others.
pub fn recover_all(root: &Path) -> anyhow::Result<Vec<Recovered>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.join(super::manifest::FILE_NAME).is_file() {
            continue;
        }
        match recover_take(&dir) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(take = %dir.display(), error = format!("{e:#}"), "could not recover this take; its files are left as they are")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encoder::TrackWriter;
    use crate::record::encoder::tests::{decode, signal};

    /// Writes `frames` frames, syncs, and returns a copy of the file as a
    /// crash at that moment leaves it (the writer is still open), with
    /// `tail` bytes of the next write torn off.
    fn crashed_copy(
        container: Container,
        channels: u16,
        frames: usize,
        tail: &[u8],
    ) -> (tempfile::TempDir, PathBuf, Vec<i32>) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(format!("live.{}", container.extension()));
        let mut w = TrackWriter::create(&live, container, channels, 48_000, "t", None).unwrap();
        let input = signal(usize::from(channels), frames);
        for chunk in input.chunks(1000 * usize::from(channels)) {
            w.write(chunk).unwrap();
        }
        w.sync().unwrap();
        let crashed = dir
            .path()
            .join(format!("crashed.{}", container.extension()));
        let mut bytes = std::fs::read(&live).unwrap();
        bytes.extend_from_slice(tail);
        std::fs::write(&crashed, bytes).unwrap();
        drop(w);
        (dir, crashed, input)
    }

    fn repaired(container: Container, channels: u16, path: &Path) -> (u64, Vec<i32>) {
        let held = inspect(path, container, channels);
        let frames = held.frames();
        cut(path, container, &held, frames).unwrap();
        let (ch, samples) = decode(path);
        assert_eq!(ch, channels);
        (frames, samples)
    }

    #[test]
    fn open_wav_gets_its_sizes_and_loses_only_a_torn_frame() {
        // Two bytes of a next sample: not a whole frame.
        let (_d, path, input) = crashed_copy(Container::Wav, 1, 48_001, &[1, 2]);
        let (frames, samples) = repaired(Container::Wav, 1, &path);
        assert!(frames > 40_000, "{frames}");
        assert!(samples == input[..frames as usize], "WAV content differs");
        let b = std::fs::read(&path).unwrap();
        let riff = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, b.len(), "RIFF size covers the file");
    }

    #[test]
    fn open_w64_gets_its_sizes() {
        let (_d, path, input) = crashed_copy(Container::W64, 32, 9_000, &[7; 50]);
        let (frames, samples) = repaired(Container::W64, 32, &path);
        assert!(frames >= 8_000, "{frames}");
        assert!(
            samples == input[..frames as usize * 32],
            "W64 content differs"
        );
        let b = std::fs::read(&path).unwrap();
        assert_eq!(
            u64::from_le_bytes(b[16..24].try_into().unwrap()),
            b.len() as u64
        );
    }

    #[test]
    fn open_flac_drops_its_torn_frame_and_fixes_streaminfo() {
        let (_d, path, input) = crashed_copy(Container::Flac, 1, 48_000, &[]);
        // Tear the last frame: cut 100 bytes off its end.
        let len = std::fs::metadata(&path).unwrap().len();
        let before = flacscan::scan(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 100)
            .unwrap();
        let (frames, samples) = repaired(Container::Flac, 1, &path);
        assert_eq!(
            frames,
            before[before.len() - 2].samples,
            "exactly the torn frame is gone"
        );
        assert!(samples == input[..frames as usize], "FLAC content differs");
        let b = std::fs::read(&path).unwrap();
        let total = (u64::from(b[21] & 0x0F) << 32)
            | u64::from(u32::from_be_bytes(b[22..26].try_into().unwrap()));
        assert_eq!(total, frames, "STREAMINFO sample count");
    }

    #[test]
    fn closed_flac_scans_to_its_full_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.flac");
        let mut w = TrackWriter::create(&path, Container::Flac, 1, 48_000, "t", None).unwrap();
        w.write(&signal(1, 30_001)).unwrap();
        w.finish().unwrap();
        assert_eq!(
            flacscan::scan(&path).unwrap().last().unwrap().samples,
            30_001
        );
    }
}
