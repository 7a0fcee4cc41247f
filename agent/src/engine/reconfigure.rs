//! Live capture settings (a pushed configuration): what only shapes the
//! next take applies at once; what the open device depends on (device,
//! channels, rate, period, pre-roll, priority) reopens it — at once when
//! no take records, when the take ends otherwise, or at once after ending
//! the take cleanly when the controller forces it.

use std::time::Instant;

use rakkr_protocol::Reopen;

use super::thread::Engine;
use crate::config::{CaptureConfig, DiskGuard};
use crate::take::writer::Ending;

/// New settings for the engine.
#[derive(Debug, Clone)]
pub struct Reconfigure {
    pub capture: CaptureConfig,
    pub disk: DiskGuard,
    /// Reopen now even while a take records (it is ended first).
    pub force: bool,
}

/// Whether the open device depends on what changed.
fn needs_reopen(a: &CaptureConfig, b: &CaptureConfig) -> bool {
    a.device != b.device
        || a.channels != b.channels
        || a.sample_rate != b.sample_rate
        || a.buffer_frames != b.buffer_frames
        || a.pre_roll != b.pre_roll
        || a.realtime != b.realtime
}

impl Engine {
    pub(super) fn reconfigure(&mut self, r: Reconfigure) -> Reopen {
        // NOTE: a recording take keeps the guard it started with; the
        // new one is for the next.
        self.cfg.disk = r.disk;
        if r.capture.meter_hz != self.cfg.capture.meter_hz
            && let Some(live) = self.live.as_mut()
        {
            // The meter restarts its window; the device stays open.
            live.meter = super::meter::Meter::new(
                live.cap.channels,
                live.cap.sample_rate,
                &crate::inventory::audio::interface_id_of(&live.device),
                r.capture.meter_hz,
            );
        }
        if !needs_reopen(&self.cfg.capture, &r.capture) {
            self.cfg.capture = r.capture;
            self.pending = None;
            return Reopen::NotNeeded;
        }
        let recording = self.takes.first().map(|a| a.info.take_id.clone());
        match recording {
            Some(take_id) if !r.force => {
                tracing::info!(take = %take_id, "new capture settings: the device is reopened when the take ends");
                self.pending = Some(r.capture);
                Reopen::AfterTake { take_id }
            }
            _ => {
                if !self.takes.is_empty() {
                    self.catch_up();
                    self.end_all(&Ending::early(
                        "configuration",
                        "the controller changed the capture settings and had the device reopened at once",
                    ));
                }
                self.pending = None;
                self.cfg.capture = r.capture;
                self.reopen();
                Reopen::Reopened
            }
        }
    }

    /// After a take ends: a reopen that waited for it happens now.
    pub(super) fn apply_pending(&mut self) {
        if let Some(capture) = self.pending.take() {
            self.cfg.capture = capture;
            self.reopen();
        }
    }

    /// Closes the device; the engine loop opens it with `cfg.capture`.
    fn reopen(&mut self) {
        if let Some(live) = self.live.take() {
            tracing::info!(device = %live.device, "closing the capture device to open it with new settings");
        }
        self.lost = None;
        self.next_open = Instant::now();
    }
}
