//! The disk guard across takes: when space runs low with several takes
//! recording on one filesystem, they stop one at a time, newest first,
//! rather than all at once at `storage.stop_free_mb`.
//!
//! With `n` takes on a filesystem, the newest stops when free space falls
//! below `stop + (warn - stop) × (n - 1) / n` (`storage.stop_free_mb` and
//! `storage.warn_free_mb`). Each stop slows the filling; the next newest
//! then has the threshold for `n - 1`, and the oldest — the archive take
//! that usually started first — records on down to `stop`, where every
//! take's own guard (`take/disk.rs`) ends it. Checked every
//! [`CHECK_EVERY`], one take per check.
//!
//! NOTE: newest first, because a controller starts the long take of the
//! whole console first and the shorter ones inside it; the wire has no
//! priority yet.

use std::time::{Duration, Instant};

use super::thread::Engine;
use crate::take::disk::DiskGuard;
use crate::take::writer::Ending;

/// Between two looks at free space (a statvfs each).
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Free bytes below which the newest of `n` takes on one filesystem stops.
pub fn threshold(guard: &DiskGuard, n: usize) -> u64 {
    let n = n.max(1) as u64;
    let span = guard.warn_free_bytes.saturating_sub(guard.stop_free_bytes);
    guard.stop_free_bytes + span / n * (n - 1)
}

impl Engine {
    /// Stops the newest take when free space on its filesystem is below
    /// its threshold (one take per look, one look per [`CHECK_EVERY`]).
    pub(super) fn shed(&mut self) {
        if self.takes.len() < 2 || self.shed_checked.elapsed() < CHECK_EVERY {
            return;
        }
        self.shed_checked = Instant::now();
        let Some(newest) = self.takes.last() else {
            return;
        };
        // NOTE: only the newest take is ever shed: on another filesystem
        // than the older ones it has them not to make room for.
        let n = self.takes.iter().filter(|a| a.dev == newest.dev).count();
        if n < 2 {
            return;
        }
        let at = threshold(&self.cfg.disk, n);
        let free = match crate::take::disk::free_bytes(newest.take.dir()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "free-space check failed");
                return;
            }
        };
        if free >= at {
            return;
        }
        let id = newest.info.take_id.clone();
        let why = format!(
            "disk low: {} MiB free on {}; with {n} takes recording there the newest stops below {} MiB (from storage.warn_free_mb {} down to storage.stop_free_mb {}) so the older ones record on",
            free >> 20,
            newest
                .take
                .dir()
                .parent()
                .unwrap_or(newest.take.dir())
                .display(),
            at >> 20,
            self.cfg.disk.warn_free_bytes >> 20,
            self.cfg.disk.stop_free_bytes >> 20,
        );
        tracing::warn!(take = %id, free_mb = free >> 20, "{why}");
        self.end_take(&id, Ending::early("disk", why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_several_stops_first_and_the_last_at_the_stop_reserve() {
        let g = DiskGuard {
            min_free_bytes: 0,
            warn_free_bytes: 40 << 20,
            stop_free_bytes: 4 << 20,
        };
        assert_eq!(threshold(&g, 1), 4 << 20, "one take: the reserve");
        assert_eq!(threshold(&g, 2), 22 << 20);
        assert_eq!(threshold(&g, 3), 28 << 20);
        assert_eq!(threshold(&g, 4), 31 << 20);
        let same = DiskGuard {
            warn_free_bytes: 1 << 20,
            ..g
        };
        assert_eq!(threshold(&same, 4), 4 << 20, "no span: all at the reserve");
    }
}
