//! Room held past the end of each open file, so that the audio still on
//! its way to the file always has somewhere to go.
//!
//! Why: another process can fill the disk faster than the disk guard
//! polls (a `dd`, a runaway log). The audio not yet in a file when that
//! happens — libavformat's I/O buffer, the encoder's frame, what is written
//! before the take can stop — would then meet ENOSPC, and the file would
//! have to be cut back to its last sync. Space freed for those writes at
//! the end (a released reserve file) is no answer: a process that keeps
//! writing takes it first. So each file holds its own blocks ahead of its
//! end (`fallocate` with `FALLOC_FL_KEEP_SIZE`: the size does not change,
//! readers see nothing), renewed every `HOLD_EVERY` frames, and gives back
//! what it did not use when it closes (`trim`).
//!
//! When the room cannot be renewed, the disk is full: the writer says so on
//! the take's `DiskFull` flag (never as a write error, which would mark the
//! file as damaged) and the take stops while everything still fits.
//!
//! Bound: between two renewals a file receives at most `HOLD_EVERY` frames
//! plus one encoder frame, and at the renewal at most libavformat's buffer
//! (32 KiB) and one encoder frame are still unwritten; the hold covers
//! both twice over.
//! See: https://man7.org/linux/man-pages/man2/fallocate.2.html

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Frames between two renewals of the room ahead (~0.17 s at 48 kHz).
pub const HOLD_EVERY: u64 = 8_192;
/// Room for libavformat's I/O buffer (32 KiB) and the trailer, with margin.
const SLACK: u64 = 64 << 10;

/// Set once, by the first file that found the disk full; the take reads it
/// after every block. Shared by every file of a take.
#[derive(Debug, Clone, Default)]
pub struct DiskFull(Arc<OnceLock<String>>);

impl DiskFull {
    /// Why the disk is full, once a file found it so.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn set(&self, why: String) {
        let _ = self.0.set(why);
    }
}

/// One open file's room ahead.
#[derive(Debug)]
pub struct Tail {
    /// Bytes held past the end at each renewal.
    bytes: u64,
    /// Renew once the file has this many frames.
    next_at: u64,
    /// The filesystem cannot preallocate: nothing is held.
    off: bool,
    full: DiskFull,
}

impl Tail {
    /// For a file whose frames take at most `frame_bytes` bytes, encoded
    /// `step` frames at a time.
    pub fn new(frame_bytes: u64, step: usize) -> Self {
        Self {
            bytes: (2 * HOLD_EVERY + 2 * step as u64) * frame_bytes + SLACK,
            next_at: 0,
            off: false,
            full: DiskFull::default(),
        }
    }

    /// Reports a full disk on `full` from now on.
    pub fn report_to(&mut self, full: DiskFull) {
        self.full = full;
    }

    /// Whether the room must be renewed at `frames` (see `hold`).
    pub fn due(&self, frames: u64) -> bool {
        !self.off && frames >= self.next_at
    }

    /// Holds room from the current end of `file` to `bytes` past `end`,
    /// where the writer's next byte goes (past the file's end by what its
    /// I/O buffer still holds).
    pub fn hold(&mut self, file: &File, path: &Path, frames: u64, end: u64) {
        if self.off {
            return;
        }
        self.next_at = frames + HOLD_EVERY;
        let result = file.metadata().and_then(|md| {
            let to = end.max(md.len()) + self.bytes;
            hold_past_end(file, md.len(), to - md.len())
        });
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                self.full.set(format!(
                    "the disk is full: no room to hold the next {} KiB of {} ({e})",
                    self.bytes >> 10,
                    path.display()
                ));
            }
            Err(e) => {
                self.off = true;
                warn_unsupported(path, &e);
            }
        }
    }
}

/// Gives back the room a closed file did not use (its size stays).
pub fn trim(file: &File, path: &Path) {
    let result = file.metadata().and_then(|md| file.set_len(md.len()));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "could not give back the room held past the end of a file");
    }
}

/// `trim` for a file that is not open.
pub fn trim_path(path: &Path) {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => trim(&f, path),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not open a file to give back the room held past its end");
        }
    }
}

fn hold_past_end(file: &File, at: u64, len: u64) -> std::io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    fallocate(
        file,
        FallocateFlags::FALLOC_FL_KEEP_SIZE,
        at as i64,
        len as i64,
    )
    .map_err(std::io::Error::from)
}

/// Once per process: recording goes on, with less protection.
fn warn_unsupported(path: &Path, e: &std::io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(file = %path.display(), error = %e, "this filesystem cannot hold room past the end of a file: if another process fills the disk, up to the last half second of a take may be cut");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn room_is_held_past_the_end_without_changing_the_size_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, vec![1u8; 4096]).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut tail = Tail::new(3, 4_096);
        let full = DiskFull::default();
        tail.report_to(full.clone());
        tail.hold(&f, &path, 0, 4096);
        if tail.off {
            eprintln!("skipped: this filesystem cannot preallocate");
            return;
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4096,
            "size unchanged"
        );
        assert!(allocated(&path) >= 4096 + tail.bytes, "room held");
        assert_eq!(full.get(), None);
        // Not renewed before HOLD_EVERY frames.
        assert!(!tail.due(HOLD_EVERY - 1));
        assert!(tail.due(HOLD_EVERY));
        // What a writer still buffers is held too.
        tail.hold(&f, &path, HOLD_EVERY, 4096 + (256 << 10));
        assert_eq!(tail.next_at, 2 * HOLD_EVERY);
        assert!(allocated(&path) >= 4096 + (256 << 10) + tail.bytes);
        trim(&f, &path);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        assert!(allocated(&path) < 4096 + tail.bytes, "room given back");
    }

    #[test]
    fn the_hold_covers_two_renewals_of_audio_and_the_io_buffer() {
        // 32 channels of 24-bit PCM in one W64, FLAC frames of 4,608.
        let t = Tail::new(96, 4_608);
        assert!(t.bytes >= (HOLD_EVERY + 4_608) * 96 + (32 << 10));
    }
}
