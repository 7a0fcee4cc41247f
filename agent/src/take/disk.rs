//! Disk guard: free space on the filesystem holding a take.
//!
//! A take refuses to start below `min_free`, warns once each time free
//! space falls below `warn_free`, and stops cleanly (every file closed and
//! valid) below `stop_free` — long before a write could fail with ENOSPC.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The free-space thresholds a take keeps to (`storage.*_free_mb`; the
/// configuration builds it).
#[derive(Debug, Clone)]
pub struct DiskGuard {
    /// A take does not start with less free space than this.
    pub min_free_bytes: u64,
    /// Below this a recording take warns (event + log), once per crossing.
    pub warn_free_bytes: u64,
    /// Below this a recording take closes every file and stops.
    pub stop_free_bytes: u64,
}

use anyhow::{Context, bail};

/// Bytes available to an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("checking free space on {}", path.display()))?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// Refuses to start a take in `dir` below the floor.
pub fn check_start(dir: &Path, guard: &DiskGuard) -> anyhow::Result<()> {
    let free = free_bytes(dir)?;
    if free < guard.min_free_bytes {
        bail!(
            "only {} MiB free on {}, below storage.min_free_mb ({} MiB): free some space or record elsewhere before starting a take",
            free >> 20,
            dir.display(),
            guard.min_free_bytes >> 20
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Low {
    /// Below the warning threshold (reported once per crossing).
    Warn(u64),
    /// Below the stop threshold: close everything now.
    Stop(u64),
}

/// Periodic free-space check for a recording take.
#[derive(Debug)]
pub struct Watch {
    path: PathBuf,
    guard: DiskGuard,
    last: Option<Instant>,
    warned: bool,
}

impl Watch {
    pub fn new(path: &Path, guard: &DiskGuard) -> Self {
        Self {
            path: path.to_owned(),
            guard: guard.clone(),
            last: None,
            warned: false,
        }
    }

    /// Checks at most once per `every`. A failing check is logged and
    /// treated as "no news": the writes themselves still report errors.
    pub fn poll(&mut self, every: Duration) -> Option<Low> {
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        self.last = Some(Instant::now());
        let free = match free_bytes(&self.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "free-space check failed");
                return None;
            }
        };
        self.classify(free)
    }

    fn classify(&mut self, free: u64) -> Option<Low> {
        if free < self.guard.stop_free_bytes {
            return Some(Low::Stop(free));
        }
        if free < self.guard.warn_free_bytes {
            if !self.warned {
                self.warned = true;
                return Some(Low::Warn(free));
            }
        } else {
            self.warned = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_crossing_and_stops_below_the_reserve() {
        let g = DiskGuard {
            min_free_bytes: 300,
            warn_free_bytes: 200,
            stop_free_bytes: 100,
        };
        let mut w = Watch::new(Path::new("/"), &g);
        assert_eq!(w.classify(500), None);
        assert_eq!(w.classify(150), Some(Low::Warn(150)));
        assert_eq!(w.classify(140), None, "warned already");
        assert_eq!(w.classify(250), None);
        assert_eq!(w.classify(190), Some(Low::Warn(190)), "a new crossing");
        assert_eq!(w.classify(99), Some(Low::Stop(99)));
    }

    #[test]
    fn refuses_to_start_below_the_floor_naming_the_key() {
        let g = DiskGuard {
            min_free_bytes: u64::MAX,
            warn_free_bytes: u64::MAX,
            stop_free_bytes: 1,
        };
        let err = check_start(Path::new("/"), &g).unwrap_err().to_string();
        assert!(err.contains("storage.min_free_mb"), "{err}");
    }
}
