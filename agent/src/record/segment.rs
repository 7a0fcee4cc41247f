//! The files of a take: one segment at a time, opened, written, synced,
//! closed and hashed. Owned by the writer thread (see `take`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::encoder::{Bext, Container, TrackWriter};
use super::manifest::FileEntry;

/// A safe file-name fragment from a channel name.
pub fn slug(name: &str) -> String {
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

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    crate::util::sha256_file(path)
        .map(|(hex, _)| hex)
        .with_context(|| format!("hashing {}", path.display()))
}

/// Fewest files per encoder thread: below this one thread does it all.
const MIN_TRACKS_PER_THREAD: usize = 4;

/// Frames de-interleaved at a time: 256 frames of 32 channels are 32 KiB,
/// which stay in the L1/L2 cache while every channel is gathered from them.
const TILE_FRAMES: usize = 256;

/// De-interleaves `block` into mono writers `group` (channels `first..`)
/// one cache-sized tile at a time, then encodes what they hold.
fn feed(
    group: &mut [(TrackWriter, FileEntry)],
    first: usize,
    block: &[i32],
    channels: usize,
) -> anyhow::Result<()> {
    for tile in block.chunks(TILE_FRAMES * channels) {
        for (i, (w, _)) in group.iter_mut().enumerate() {
            w.push_channel(tile, first + i, channels);
        }
    }
    for (w, _) in group.iter_mut() {
        w.encode_pending()?;
    }
    Ok(())
}

/// Encodes each channel's samples into its file, spreading the files over
/// the available cores when there are enough of them (32 FLAC encoders
/// are more than one small core keeps up with in real time).
///
/// NOTE: scoped threads per block keep ownership simple (every writer is
/// borrowed by exactly one thread for one block); a block is 10–85 ms of
/// audio, so the spawn cost (tens of µs) is noise.
fn encode_spread(
    tracks: &mut [(TrackWriter, FileEntry)],
    block: &[i32],
    channels: usize,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(tracks.len() / MIN_TRACKS_PER_THREAD).max(1);
    if threads == 1 {
        return feed(tracks, 0, block, channels);
    }
    let per = tracks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = tracks
            .chunks_mut(per)
            .enumerate()
            .map(|(n, group)| s.spawn(move || feed(group, n * per, block, channels)))
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("an encoder thread panicked"))??;
        }
        Ok(())
    })
}

/// The open files of one segment.
pub struct Segment {
    pub number: u32,
    pub frames: u64,
    /// (writer, file entry with `samples`/`sha256` still unset)
    tracks: Vec<(TrackWriter, FileEntry)>,
}

impl Segment {
    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        for (w, _) in &mut self.tracks {
            w.sync()?;
        }
        Ok(())
    }

    /// Writes interleaved `block` (whole frames) into the segment's files.
    pub fn write(&mut self, channels: usize, block: &[i32]) -> anyhow::Result<()> {
        if self.tracks.len() > 1 || channels == 1 {
            encode_spread(&mut self.tracks, block, channels)?;
        } else if let Some((w, _)) = self.tracks.first_mut() {
            w.write(block)?;
        }
        self.frames += (block.len() / channels) as u64;
        Ok(())
    }

    /// Finishes every file (final headers, fsync) and hashes it. Tries every
    /// file even when one fails, so that as many as possible end valid.
    pub fn close(self, dir: &Path) -> anyhow::Result<Vec<FileEntry>> {
        let mut out = Vec::new();
        let mut first_err = None;
        for (w, mut entry) in self.tracks {
            match w
                .finish()
                .and_then(|(path, n)| Ok((n, sha256_file(&path)?)))
            {
                Ok((samples, sha)) => {
                    entry.samples = samples;
                    entry.sha256 = sha;
                    out.push(entry);
                }
                Err(e) => {
                    tracing::error!(file = %entry.file, error = format!("{e:#}"), "could not close");
                    first_err.get_or_insert(e);
                }
            }
        }
        super::sync_dir(dir)?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// What every segment of a take shares.
pub struct Layout {
    pub dir: PathBuf,
    pub take_id: String,
    pub container: Container,
    pub channel_names: Vec<String>,
    pub rate: u32,
    pub started: time::OffsetDateTime,
}

impl Layout {
    /// The files segment `number` will have (for the manifest, which lists
    /// them before they exist so that recovery can find them).
    pub fn plan(&self, number: u32, first_frame: u64) -> Vec<FileEntry> {
        let ext = self.container.extension();
        let entry = |file: String, channels: Vec<u16>, name: &str| FileEntry {
            file,
            segment: number,
            channels,
            name: name.to_owned(),
            first_sample: first_frame,
            samples: 0,
            sha256: String::new(),
        };
        if self.container.per_channel() {
            (self.channel_names.iter().enumerate())
                .map(|(i, name)| {
                    let file = format!("{:02}-{}-s{number:03}.{ext}", i + 1, slug(name));
                    entry(file, vec![i as u16 + 1], name)
                })
                .collect()
        } else {
            let n = self.channel_names.len() as u16;
            let file = format!("{}-s{number:03}.{ext}", slug(&self.take_id));
            vec![entry(file, (1..=n).collect(), &self.take_id)]
        }
    }

    /// Creates the files `plan` named.
    pub fn open(&self, entries: Vec<FileEntry>) -> anyhow::Result<Segment> {
        let (number, first_frame) = entries
            .first()
            .map(|e| (e.segment, e.first_sample))
            .context("a segment needs at least one file")?;
        let at =
            self.started + time::Duration::seconds_f64(first_frame as f64 / f64::from(self.rate));
        let midnight = at.replace_time(time::Time::MIDNIGHT);
        let bext = Bext {
            description: format!("Rakkr take {} segment {number}", self.take_id),
            origination: at,
            time_reference: ((at - midnight).as_seconds_f64() * f64::from(self.rate)).round()
                as u64,
        };
        let bext = (self.container == Container::Wav).then_some(&bext);
        let mut tracks = Vec::new();
        for e in entries {
            let title = if self.container.per_channel() {
                e.name.clone()
            } else {
                self.take_id.to_owned()
            };
            let w = TrackWriter::create(
                &self.dir.join(&e.file),
                self.container,
                e.channels.len() as u16,
                self.rate,
                &title,
                bext,
            )?;
            tracks.push((w, e));
        }
        super::sync_dir(&self.dir)?;
        Ok(Segment {
            number,
            frames: 0,
            tracks,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(super::slug("Kick In / Sub"), "Kick_In___Sub");
        assert_eq!(super::slug("../etc"), "etc");
    }
}
