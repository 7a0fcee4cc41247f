//! Admission: a take starts beside others only when the node can carry
//! it. Besides the concurrency limit (`requests.rs`):
//!
//! - **CPU.** The writer (this thread, and the spread workers) must keep
//!   up with every take at once, or the capture ring overflows and every
//!   take loses audio. What encoding costs here is measured once per
//!   format (`take/calibrate.rs`); a start is refused with `Busy` when the
//!   takes would need more than [`CPU_SHARE`] of the node's CPUs. The
//!   first take is never refused for it: it runs alone, and recording
//!   what can be recorded beats recording nothing.
//! - **Disk.** A take of known length (duration or end time) needs at most
//!   its frames × 3 bytes × channels (24-bit PCM: WAV and W64 exactly,
//!   FLAC at worst), and the takes already recording write on meanwhile.
//!   A start is refused with `InvalidArgument` when that does not fit in
//!   the free space above `storage.stop_free_mb`. A take without an end
//!   cannot be sized: the floor (`storage.min_free_mb`) and the disk
//!   guard (`shed.rs`) keep it.

use std::path::Path;

use rakkr_protocol::FailureCode;

use super::Refusal;
use super::thread::Engine;
use crate::take::encoder::Container;

/// Share of the node's CPUs the writer may plan to use: capture, hashing,
/// the link and the system keep the rest, and a busy moment has room.
pub const CPU_SHARE: f64 = 0.5;

/// A take that asks to start.
pub(super) struct Candidate<'a> {
    pub(super) take_id: &'a str,
    pub(super) channels: u16,
    pub(super) container: Container,
    /// Frames it records (`None`: until stopped).
    pub(super) frames: Option<u64>,
    pub(super) dir: &'a Path,
}

/// Bytes a frame of `channels` takes at most on disk.
fn frame_bytes(channels: u16) -> u64 {
    3 * u64::from(channels)
}

impl Engine {
    /// Refuses `c` when the node cannot carry it beside the running takes.
    pub(super) fn admit(&mut self, c: &Candidate<'_>) -> Result<(), Refusal> {
        self.admit_disk(c)?;
        if !self.takes.is_empty() {
            self.admit_cpu(c)?;
        }
        Ok(())
    }

    fn admit_disk(&self, c: &Candidate<'_>) -> Result<(), Refusal> {
        let Some(frames) = c.frames else {
            return Ok(());
        };
        let free = match crate::take::disk::free_bytes(c.dir) {
            Ok(f) => f,
            // NOTE: the take's own start checks the disk and says why.
            Err(_) => return Ok(()),
        };
        let rate = self.live.as_ref().map_or(48_000, |l| l.cap.sample_rate);
        let own = frames * frame_bytes(c.channels);
        let others: u64 = self
            .takes
            .iter()
            .map(|a| {
                let left = a
                    .limit
                    .map_or(frames, |l| l.saturating_sub(a.take.position()).min(frames));
                left * frame_bytes(a.channels.len() as u16)
            })
            .sum();
        let stop = self.cfg.disk.stop_free_bytes;
        let room = free.saturating_sub(stop);
        if own + others <= room {
            return Ok(());
        }
        let mib = |b: u64| b.div_ceil(1 << 20);
        Err(Refusal::new(
            FailureCode::InvalidArgument,
            format!(
                "take {} needs up to {} MiB for its {} s of {} channels, and the {} takes recording write {} MiB meanwhile; {} has {} MiB free above storage.stop_free_mb ({} MiB): record it shorter or on fewer channels, or free space",
                c.take_id,
                mib(own),
                frames / u64::from(rate.max(1)),
                c.channels,
                self.takes.len(),
                mib(others),
                c.dir.display(),
                mib(room),
                stop >> 20
            ),
        ))
    }

    /// Thread CPU ns per sample of `container`, measured once.
    fn cost(&mut self, container: Container, dir: &Path) -> Option<f64> {
        let slot = container as usize;
        if self.costs[slot].is_none() {
            match crate::take::calibrate::cost_ns_per_sample(container, dir) {
                Ok(ns) => {
                    // Test fault: an encoder a thousand times slower.
                    let ns = if crate::build_info::fault("slow-encoder") {
                        ns * 1000.0
                    } else {
                        ns
                    };
                    tracing::info!(format = ?container, ns_per_sample = ns, "encoder cost measured");
                    self.costs[slot] = Some(ns);
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "could not measure the encoder's cost; takes start without the CPU check"
                    );
                }
            }
        }
        self.costs[slot]
    }

    fn admit_cpu(&mut self, c: &Candidate<'_>) -> Result<(), Refusal> {
        let rate = self.live.as_ref().map_or(48_000, |l| l.cap.sample_rate) as f64;
        let formats: Vec<(Container, usize)> = self
            .takes
            .iter()
            .map(|a| (a.container, a.channels.len()))
            .chain([(c.container, usize::from(c.channels))])
            .collect();
        let mut need = 0.0;
        for (container, channels) in formats {
            let Some(ns) = self.cost(container, c.dir) else {
                return Ok(());
            };
            need += ns * channels as f64 * rate / 1e9;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let may = CPU_SHARE * cpus;
        if need <= may {
            return Ok(());
        }
        Err(Refusal::new(
            FailureCode::Busy,
            format!(
                "take {} would bring the writer to {:.0} % of a CPU with the {} takes recording; this node's writer may plan on {:.0} % ({:.0} % of its {cpus} CPUs): stop a take, record fewer channels, or use WAV (cheaper than FLAC to encode)",
                c.take_id,
                need * 100.0,
                self.takes.len(),
                may * 100.0,
                CPU_SHARE * 100.0,
            ),
        ))
    }
}
