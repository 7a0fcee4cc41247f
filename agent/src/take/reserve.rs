//! The take's space reserve: `.reserve` in the take directory, allocated
//! (not sparse) while the take records. It becomes the final manifest.
//!
//! Why: another process can fill the disk faster than the disk guard
//! polls (a `dd`, a runaway log). The final manifest — the one that says
//! the take ended and lists every file — must still be written then.
//! Freeing space for it at the end is no answer (a process that keeps
//! writing takes it first), so the manifest is written *into* the
//! reserve's own blocks, which nobody else can have: overwrite in place,
//! cut to length, fsync, rename over `manifest.json`, fsync the directory
//! (`into_manifest`). The open files' last audio has its own room (see
//! `tail`).
//!
//! The reserve grows with the manifest (`grow` at each segment close). If
//! it cannot be allocated, the disk is already too full to record safely:
//! a take does not start, and a running take stops.

use std::path::{Path, PathBuf};

use anyhow::Context;

pub const FILE_NAME: &str = ".reserve";

/// Room for one file's entry in the final manifest (its hash, counts and
/// names, pretty-printed JSON), with margin.
pub const PER_FILE: u64 = 1 << 10;
/// Room beyond the entries: stop reasons, repair lines, gaps, markers.
const BASE: u64 = 256 << 10;

/// How large the reserve must be for a manifest of `manifest_bytes` and
/// `files` more entries to come.
pub fn size_for(files: usize, manifest_bytes: u64) -> u64 {
    BASE + PER_FILE * files as u64 + manifest_bytes
}

#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    file: Option<std::fs::File>,
    len: u64,
}

impl Reserve {
    /// No reserve (one that was used up).
    pub fn none() -> Self {
        Self {
            path: PathBuf::new(),
            file: None,
            len: 0,
        }
    }

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

    /// Replaces `target` with `bytes`, written into the reserve's own
    /// blocks (see the module doc), with `mode`. The reserve is used up:
    /// on error it is deleted, and the caller may still try a plain write.
    pub fn into_manifest(mut self, target: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::{FileExt, PermissionsExt};
        let Some(file) = self.file.as_ref() else {
            anyhow::bail!("the space reserve is gone");
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let result = file
            .write_all_at(bytes, 0)
            .and_then(|()| file.set_len(bytes.len() as u64))
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&self.path, target))
            .and_then(|()| rakkr_protocol::fsutil::sync_dir(dir));
        match result {
            Ok(()) => {
                // Renamed: nothing left to delete.
                self.file = None;
                Ok(())
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "writing {} through the space reserve {}",
                    target.display(),
                    self.path.display()
                )
            }),
        }
    }

    /// Deletes the reserve.
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

    #[test]
    fn the_reserve_becomes_the_file_whole_and_nothing_is_left_behind() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("manifest.json");
        std::fs::write(&target, b"old").unwrap();
        let r = Reserve::make(dir.path(), 64 << 10).unwrap();
        r.into_manifest(&target, b"{\"new\":1}", 0o644).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{\"new\":1}");
        let md = std::fs::metadata(&target).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o644);
        assert!(!dir.path().join(FILE_NAME).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
