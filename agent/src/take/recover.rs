//! Repairs takes that a crash or power cut interrupted.
//!
//! A take needs repair when its manifest still says `recording` and no
//! process holds its lock. Closed segments are complete already (their
//! files were finished and fsynced before the manifest listed them). Each
//! file of the open segment keeps the audio it holds intact, on its own:
//! FLAC up to its last frame whose CRCs check out, WAV/W64 up to the length
//! its header declared at the last sync (PCM carries no checksum, so bytes
//! past that cannot be told from damage). A damaged channel costs the
//! other channels nothing: every file gets its own sample count in the
//! manifest (channels stay aligned at their start). What is not taken as
//! audio is never deleted: it is set aside in `<file>.unverified` and
//! listed. Closed files the sealer had not hashed yet are hashed; the
//! manifest says `recovered` and what was done.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::encoder::Container;
use super::lock::TakeLock;
use super::manifest::{FileEntry, Manifest, Recovery, TakeStatus};
use super::segment::sha256_file;
use super::{flacscan, riffscan};

/// Suffix of the file that keeps bytes recovery did not take as audio.
pub const SET_ASIDE_SUFFIX: &str = ".unverified";

/// What `recover_take` did.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What one unfinished file holds.
enum Held {
    /// Where its frames start, the ends of its complete frames, and the
    /// file's length.
    Flac(u64, Vec<flacscan::FrameEnd>, u64),
    Pcm(riffscan::DataChunk, u64),
    /// No usable header: the file was cut while being created.
    Nothing(String),
}

impl Held {
    fn frames(&self) -> u64 {
        match self {
            Held::Flac(_, f, _) => f.last().map_or(0, |f| f.samples),
            Held::Pcm(d, frame_bytes) => d.present.min(d.declared) / frame_bytes,
            Held::Nothing(_) => 0,
        }
    }

    /// File offset where the audio taken ends, and the bytes after it.
    fn tail(&self) -> Option<(u64, u64)> {
        match self {
            Held::Flac(start, ends, len) => {
                let end = ends.last().map_or(*start, |e| e.end);
                (*len > end).then_some((end, len - end))
            }
            Held::Pcm(d, fb) => {
                let kept = self.frames() * fb;
                (d.present > kept).then_some((d.start + kept, d.present - kept))
            }
            Held::Nothing(_) => None,
        }
    }
}

fn inspect(path: &Path, container: Container, channels: u16) -> Held {
    let held = match container {
        Container::Flac => flacscan::scan_with_start(path).and_then(|(start, ends)| {
            let len = std::fs::metadata(path)?.len();
            Ok(Held::Flac(start, ends, len))
        }),
        Container::Wav | Container::W64 => riffscan::find_data(path, container)
            .map(|d| Held::Pcm(d, container.frame_bytes(channels))),
    };
    held.unwrap_or_else(|e| {
        tracing::warn!(file = %path.display(), error = format!("{e:#}"), "no audio can be saved from this file");
        Held::Nothing(format!("{e:#}"))
    })
}

/// Copies `len` bytes at `from` of `path` into `<path>.unverified`.
fn set_aside(path: &Path, from: u64, len: u64) -> anyhow::Result<PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    let mut name = path.as_os_str().to_owned();
    name.push(SET_ASIDE_SUFFIX);
    let to = PathBuf::from(name);
    let mut src =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    src.seek(SeekFrom::Start(from))?;
    let bytes = {
        let mut v = Vec::with_capacity(len.min(1 << 24) as usize);
        src.take(len).read_to_end(&mut v)?;
        v
    };
    rakkr_protocol::fsutil::atomic_write(&to, &bytes, 0o644)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(to)
}

/// Cuts the file to what `held` takes as audio (setting aside the rest)
/// and returns lines for the manifest.
fn cut(path: &Path, container: Container, held: &Held) -> anyhow::Result<Vec<String>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let frames = held.frames();
    let mut lines = Vec::new();
    if let Some((from, len)) = held.tail() {
        let kept = set_aside(path, from, len)?;
        let kept = kept
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let why = match held {
            Held::Flac(..) => "after its last complete frame (a torn frame or damage)",
            _ => {
                "past the length its header declared at the last sync (PCM cannot tell audio from damage there)"
            }
        };
        lines.push(format!(
            "{name}: {len} bytes {why} not taken as audio; kept in {kept}"
        ));
    }
    match held {
        Held::Flac(start, ends, _) => {
            let end = ends.last().copied().unwrap_or(flacscan::FrameEnd {
                end: *start,
                samples: 0,
            });
            flacscan::truncate_at(path, end)?;
            lines.push(format!(
                "{name}: {frames} samples in complete frames kept, STREAMINFO sample count set to {frames}"
            ));
        }
        Held::Pcm(data, frame_bytes) => {
            riffscan::truncate_at(path, container, *data, frames * frame_bytes)?;
            lines.push(format!("{name}: header sizes set to {frames} frames"));
        }
        Held::Nothing(_) => {}
    }
    Ok(lines)
}

/// Repairs one file its writer did not finish (a crash, or a close that
/// failed): returns its entry with the samples it holds (`None` when it
/// held none and was removed) and what was done.
pub fn repair_file(
    dir: &Path,
    container: Container,
    mut entry: FileEntry,
) -> anyhow::Result<(Option<FileEntry>, Vec<String>)> {
    let path = dir.join(&entry.file);
    if !path.exists() {
        return Ok((
            None,
            vec![format!("{}: missing, nothing to save", entry.file)],
        ));
    }
    let held = inspect(&path, container, entry.channels.len() as u16);
    if let Held::Nothing(why) = &held {
        // Not even a header to go by: kept whole, not listed as audio.
        let mut to = path.as_os_str().to_owned();
        to.push(SET_ASIDE_SUFFIX);
        std::fs::rename(&path, &to).with_context(|| format!("setting {} aside", path.display()))?;
        return Ok((
            None,
            vec![format!(
                "{}: no audio could be read ({why}); kept whole as {}{SET_ASIDE_SUFFIX}",
                entry.file, entry.file
            )],
        ));
    }
    let mut lines = cut(&path, container, &held)?;
    // The room an open file held past its end (see `tail`) is given back.
    super::tail::trim_path(&path);
    if held.frames() == 0 {
        // A bare header: this file of the segment never held audio.
        std::fs::remove_file(&path)
            .with_context(|| format!("removing empty {}", path.display()))?;
        lines.push(format!("{}: held no audio, removed", entry.file));
        return Ok((None, lines));
    }
    entry.samples = held.frames();
    entry.sha256 = sha256_file(&path)?;
    Ok((Some(entry), lines))
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
    let segment = open.first().map_or(m.segments, |e| e.segment);
    let first = open.first().map(|e| e.first_sample);
    let mut actions = Vec::new();
    let mut kept = Vec::new();
    for entry in open {
        let (e, lines) = repair_file(dir, m.format, entry)?;
        actions.extend(lines);
        kept.extend(e);
    }
    let saved = kept.iter().map(|e| e.samples).max().unwrap_or(0);
    for e in kept.iter().filter(|e| e.samples < saved) {
        actions.push(format!(
            "{}: {} samples shorter than the longest file of segment {segment}; the other channels keep theirs",
            e.file,
            saved - e.samples
        ));
    }
    if kept.is_empty() && first.is_some() && segment == m.segments && m.segments > 1 {
        // Nothing of the open segment reached the disk: it never existed.
        m.segments -= 1;
    }
    m.files.extend(kept);
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
    remove_reserve(dir);
    super::sync_dir(dir)?;
    m.frames = take_frames(&m.files);
    m.status = TakeStatus::Recovered;
    m.finished_at = last_write(dir, &m.files).unwrap_or_else(crate::util::now_iso8601);
    m.recovery = Some(Recovery {
        recovered_at: crate::util::now_iso8601(),
        segment,
        frames_saved: saved,
        actions,
    });
    m.write(dir)?;
    tracing::warn!(take = %m.take_id, dir = %dir.display(), frames = m.frames, segment, saved, "take recovered after an interrupted recording");
    Ok(Some(Recovered {
        dir: dir.to_owned(),
        manifest: m,
    }))
}

/// The take's length: where its longest channel ends.
pub fn take_frames(files: &[FileEntry]) -> u64 {
    files
        .iter()
        .map(|f| f.first_sample + f.samples)
        .max()
        .unwrap_or(0)
}

/// A take's space reserve is only needed while it records.
fn remove_reserve(dir: &Path) {
    let path = dir.join(super::reserve::FILE_NAME);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "could not delete a space reserve");
    }
}

/// When the recording stopped: the newest modification time of its files.
fn last_write(dir: &Path, files: &[FileEntry]) -> Option<String> {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(&f.file)).ok()?.modified().ok())
        .max()
        .map(|t| crate::util::iso8601(time::OffsetDateTime::from(t).unix_timestamp()))
}

/// What `recover_all` found: repaired takes and takes it could not repair.
#[derive(Debug, Default)]
pub struct Report {
    pub recovered: Vec<Recovered>,
    pub failed: Vec<(PathBuf, anyhow::Error)>,
}

/// Repairs every interrupted take directly under `root`. One take's
/// failure is logged and does not stop the others.
pub fn recover_all(root: &Path) -> anyhow::Result<Report> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Report::default()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut out = Report::default();
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        if !dir.join(super::manifest::FILE_NAME).is_file() {
            continue;
        }
        match recover_take(&dir) {
            Ok(Some(r)) => out.recovered.push(r),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(take = %dir.display(), error = format!("{e:#}"), "could not recover this take; its files are left as they are");
                out.failed.push((dir, e));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::take::encoder::TrackWriter;
    use crate::take::encoder::tests::{decode, signal};

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
        cut(path, container, &held).unwrap();
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
        let before = flacscan::scan_with_start(&path).unwrap().1;
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
            flacscan::scan_with_start(&path)
                .unwrap()
                .1
                .last()
                .unwrap()
                .samples,
            30_001
        );
    }
}
