//! The take's space reserve: `.reserve` in the take directory, allocated
//! (not sparse) while the take records and deleted when it ends.
//!
//! Why: another process can fill the disk faster than the disk guard
//! polls (a `dd`, a runaway log). Then the last writes of a take — the
//! encoders' buffered tails, the final headers, the manifest, written
//! through a temporary file and a rename — would fail with ENOSPC, and a
//! take could not even say it stopped. Freeing the reserve first gives
//! those writes the room they need, whatever else happened to the disk.
//!
//! The reserve covers the manifest (which grows with every closed file;
//! `grow` follows it at each segment close) and a bounded tail per open
//! file. If it cannot be allocated, the disk is already too full to record
//! safely: a take does not start, and a running take stops.

use std::path::{Path, PathBuf};

use anyhow::Context;

pub const FILE_NAME: &str = ".reserve";

/// Room for one open file's unwritten tail at close: FFmpeg's I/O buffer
/// (32 KiB), an encoder frame and the trailer, with margin.
pub const PER_FILE: u64 = 128 << 10;
/// Room for the manifest's temporary copy beyond its current size.
const BASE: u64 = 256 << 10;

/// How large the reserve must be for `files` open files and a manifest
/// of `manifest_bytes` (the atomic rewrite holds two copies at once).
pub fn size_for(files: usize, manifest_bytes: u64) -> u64 {
    BASE + PER_FILE * files as u64 + 2 * manifest_bytes
}

#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    file: Option<std::fs::File>,
    len: u64,
}

impl Reserve {
    /// Allocates `len` bytes in `dir`.
    pub fn make(dir: &Path, len: u64) -> anyhow::Result<Self> {
        let path = dir.join(FILE_NAME);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating the space reserve {}", path.display()))?;
        let mut r = Self {
            path,
            file: Some(file),
            len: 0,
        };
        if let Err(e) = r.grow(len) {
            r.release();
            return Err(e);
        }
        Ok(r)
    }

    /// Makes the reserve at least `len` bytes; `Err` when the disk has no
    /// room for it (the take must stop while it can still close cleanly).
    pub fn grow(&mut self, len: u64) -> anyhow::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        if len <= self.len {
            return Ok(());
        }
        allocate(file, self.len, len - self.len).with_context(|| {
            format!(
                "allocating {} KiB of space reserve in {}",
                len >> 10,
                self.path.display()
            )
        })?;
        self.len = len;
        Ok(())
    }

    /// Deletes the reserve, giving its space back for the take's last writes.
    pub fn release(&mut self) {
        if self.file.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "could not delete the space reserve");
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        self.release();
    }
}

/// Allocates real blocks: `fallocate`, or zeros where the filesystem does
/// not support it (the blocks must exist, a sparse file reserves nothing).
fn allocate(file: &std::fs::File, at: u64, len: u64) -> std::io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), at as i64, len as i64) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = file;
            f.seek(SeekFrom::Start(at))?;
            let zeros = vec![0u8; 64 << 10];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_data()
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_holds_real_blocks_and_is_gone_when_released() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reserve::make(dir.path(), 1 << 20).unwrap();
        let path = dir.path().join(FILE_NAME);
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.len(), 1 << 20);
        assert!(md.blocks() * 512 >= 1 << 20, "allocated, not sparse");
        r.grow(2 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 << 20);
        r.grow(1 << 20).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 << 20,
            "never shrinks"
        );
        r.release();
        assert!(!path.exists());
    }
}
