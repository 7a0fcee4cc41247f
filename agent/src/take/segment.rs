//! The files of a take: one segment at a time, opened, written, synced,
//! closed (and handed to the sealer). Owned by the writer thread (see `writer`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::encoder::{Bext, Container, TrackWriter};
use super::manifest::FileEntry;
use super::spread::{Spread, Threads};
use super::tail::DiskFull;

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

/// The open files of one segment.
pub struct Segment {
    pub number: u32,
    pub frames: u64,
    /// The files, spread over the encoder threads.
    spread: Spread,
}

impl Segment {
    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.spread.sync()
    }

    /// Writes interleaved `block` (whole frames) into the segment's files.
    pub fn write(&mut self, channels: usize, block: &[i32]) -> anyhow::Result<()> {
        self.spread.write(block, channels)?;
        self.frames += (block.len() / channels) as u64;
        Ok(())
    }

    /// Finishes every file (final headers, fsync); the entries get their
    /// sample counts (hashing is the sealer's, see `seal`). Tries every file
    /// even when one fails, so that as many as possible end valid. Returns
    /// the closed files, and the files that must be repaired with why: those
    /// whose close failed, and every file once a write failed (FFmpeg stops
    /// writing a file after an I/O error, so its count cannot be trusted).
    #[allow(clippy::type_complexity)]
    pub fn close(self, dir: &Path) -> (Vec<FileEntry>, Vec<(FileEntry, anyhow::Error)>) {
        let mut out = Vec::new();
        let mut failed = Vec::new();
        let (tracks, write_err) = self.spread.into_tracks();
        let write_err = write_err.map(|e| format!("{e:#}"));
        for (w, mut entry) in tracks {
            match (w.finish(), &write_err) {
                (Ok((_, samples)), None) => {
                    entry.samples = samples;
                    out.push(entry);
                }
                (Ok(_), Some(why)) => {
                    failed.push((entry, anyhow::anyhow!("an earlier write failed: {why}")));
                }
                (Err(e), _) => {
                    tracing::error!(file = %entry.file, error = format!("{e:#}"), "could not close");
                    failed.push((entry, e));
                }
            }
        }
        if let Err(e) = super::sync_dir(dir) {
            tracing::error!(error = format!("{e:#}"), "syncing the take directory");
        }
        (out, failed)
    }
}

/// What every segment of a take shares.
pub struct Layout {
    pub dir: PathBuf,
    pub take_id: String,
    pub container: Container,
    pub channel_names: Vec<String>,
    /// The console at the take's start: each file's metadata says which
    /// console channel it is.
    pub console: Option<super::manifest::ConsoleAtStart>,
    pub rate: u32,
    pub started: time::OffsetDateTime,
    /// How many threads encode each segment.
    pub threads: Threads,
    /// Set by the first file that finds the disk full (see `tail`).
    pub full: DiskFull,
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

    /// What a file of take channels `channels` is on the console:
    /// `X32 "FOH" ch 17 "Pastor"` (several: joined by `, `).
    fn console_comment(&self, channels: &[u16]) -> Option<String> {
        let c = self.console.as_ref()?;
        let parts: Vec<String> = channels
            .iter()
            .filter_map(|ch| c.channels.iter().find(|x| x.channel == *ch))
            .filter_map(|x| {
                let cc = x.console_channel?;
                Some(match &x.name {
                    Some(n) => format!("ch {cc} {n:?}"),
                    None => format!("ch {cc}"),
                })
            })
            .collect();
        (!parts.is_empty()).then(|| format!("{} {:?} {}", c.model, c.name, parts.join(", ")))
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
        let mut tracks = Vec::new();
        for e in entries {
            let title = if self.container.per_channel() {
                e.name.clone()
            } else {
                self.take_id.to_owned()
            };
            let comment = self.console_comment(&e.channels);
            let bext = Bext {
                description: match &comment {
                    Some(c) => format!("Rakkr take {} segment {number}: {c}", self.take_id),
                    None => format!("Rakkr take {} segment {number}", self.take_id),
                },
                origination: at,
                time_reference: ((at - midnight).as_seconds_f64() * f64::from(self.rate)).round()
                    as u64,
            };
            let bext = (self.container == Container::Wav).then_some(&bext);
            let mut w = TrackWriter::create_tagged(
                &self.dir.join(&e.file),
                self.container,
                e.channels.len() as u16,
                self.rate,
                &title,
                comment.as_deref(),
                bext,
            )?;
            w.report_full_to(self.full.clone());
            tracks.push((w, e));
        }
        super::sync_dir(&self.dir)?;
        Ok(Segment {
            number,
            frames: 0,
            spread: Spread::new(tracks, self.channel_names.len(), self.rate, self.threads)?,
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
