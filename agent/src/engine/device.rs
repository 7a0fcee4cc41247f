//! The engine's device side: opening the capture (and reopening it after
//! a loss), turning xrun/overflow counters into gaps and events, noticing a
//! device that went away or fell silent, and its return.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Output;
use super::meter::Meter;
use super::preroll::PreRoll;
use super::thread::{Engine, Live, RETRY, STALL};
use crate::capture::{self, CaptureSpec};
use crate::config::DeviceSelector;
use crate::inventory::{audio, select};

impl Engine {
    pub(super) fn try_open(&mut self) {
        if Instant::now() < self.next_open {
            return;
        }
        self.next_open = Instant::now() + RETRY;
        match self.open() {
            Ok(live) => {
                tracing::info!(device = %live.device, channels = live.cap.channels, rate = live.cap.sample_rate, format = %live.cap.format, realtime_priority = ?live.cap.realtime, "capture running");
                self.device = live.device.clone();
                self.device_error = None;
                self.live = Some(live);
                self.last_audio = Instant::now();
                self.reschedule();
                for req in std::mem::take(&mut self.cfg.autostart) {
                    let id = req.take_id.clone();
                    if let Err(refusal) = self.start_timed(req) {
                        tracing::error!(take = %id, error = %refusal.message, "a take due at start could not start");
                        (self.out)(Output::StartFailed { refusal });
                    }
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if self.device_error.as_deref() != Some(&msg) {
                    tracing::warn!(error = %msg, "no capture device; retrying every {RETRY:?}");
                    self.device_error = Some(msg);
                }
            }
        }
    }

    fn open(&self) -> anyhow::Result<Live> {
        let device = match &self.cfg.capture.device {
            DeviceSelector::Exact(name) => name.clone(),
            other => match select::choose(other, &audio::discover()) {
                (Some(d), _) => d.name.clone(),
                (None, why) => anyhow::bail!("{why}"),
            },
        };
        let cap = capture::open(&CaptureSpec {
            device: device.clone(),
            channels: self.cfg.capture.channels,
            sample_rate: self.cfg.capture.sample_rate,
            buffer_frames: self.cfg.capture.buffer_frames,
            realtime: self.cfg.capture.realtime.priority_for(&device),
        })?;
        let ch = usize::from(cap.channels);
        let pre = (self.cfg.capture.pre_roll.as_secs_f64() * f64::from(cap.sample_rate)) as usize;
        Ok(Live {
            // NOTE: the inventory's id, not the ALSA name: the controller
            // joins frames to the interface (and its channel names) by it.
            meter: Meter::new(
                cap.channels,
                cap.sample_rate,
                &audio::interface_id_of(&device),
                self.cfg.capture.meter_hz,
            ),
            preroll: PreRoll::new(pre, ch),
            device,
            cap,
            xruns: 0,
            dropped: 0,
            overflow: 0,
            consumed: 0,
            unreported: None,
        })
    }

    /// Turns xrun and overflow counters into manifest entries and (at
    /// most one per second) events.
    pub(super) fn check_counters(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let xruns = live.cap.stats.xruns.load(Ordering::Relaxed);
        let overflow = live.cap.stats.dropped.load(Ordering::Relaxed);
        let dropped = overflow + live.cap.stats.xrun_lost.load(Ordering::Relaxed);
        if xruns != live.xruns || dropped != live.dropped {
            let lost = dropped - live.dropped;
            let at = live.cap.stats.last_drop_at.load(Ordering::Relaxed);
            // NOTE: `live.dropped` counts both kinds; an overflow moves
            // `overflow` past what was accounted before.
            let cause = if overflow > live.overflow {
                "ring overflow (the writer fell behind)"
            } else {
                "device xrun"
            };
            live.overflow = overflow;
            live.xruns = xruns;
            live.dropped = dropped;
            for a in &mut self.takes {
                let pos = at.saturating_sub(a.origin);
                if a.limit.is_none_or(|l| pos < l) {
                    a.take.xrun(pos, lost, cause);
                }
            }
            let u = live.unreported.get_or_insert((at, 0, Instant::now()));
            u.1 += lost;
        }
        let Some((at, lost, since)) = live.unreported else {
            return;
        };
        if since.elapsed() < Duration::from_secs(1) {
            return;
        }
        live.unreported = None;
        tracing::warn!(frames_lost = lost, "audio lost (xrun or overflow)");
        // One event per take it hit (its own position), or one without.
        let mut hit: Vec<(String, u64)> = self
            .takes
            .iter()
            .map(|a| (a.info.take_id.clone(), at.saturating_sub(a.origin)))
            .collect();
        if hit.is_empty() {
            hit.push((String::new(), 0));
        }
        for (take_id, at_sample) in hit {
            (self.out)(Output::Xrun {
                take_id,
                at_sample,
                frames_lost: lost,
            });
        }
    }

    pub(super) fn check_device(&mut self) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let gone = live.cap.stats.device_lost.load(Ordering::Acquire);
        if !gone && self.last_audio.elapsed() < STALL {
            return;
        }
        let reason = if gone {
            "the device went away".to_owned()
        } else {
            format!("no audio for {STALL:?}")
        };
        let device = live.device.clone();
        // NOTE: cpal ends a stream for good on device loss, and a stream
        // whose server died (JACK) never delivers again: drop it and build
        // a new one when the device is back. Dropping joins cpal's worker,
        // which a stalled plugin may block, so it happens off this thread.
        if let Some(dead) = self.live.take() {
            let _ = std::thread::Builder::new()
                .name("rakkr-drop-stream".into())
                .spawn(move || drop(dead));
        }
        self.next_open = Instant::now() + RETRY;
        if self.lost.is_some() {
            return; // Reported already; this was a reopen that stayed silent.
        }
        self.lost = Some(self.last_audio);
        tracing::warn!(device = %device, reason = %reason, "capture device lost");
        let mut hit = Vec::new();
        for i in 0..self.takes.len() {
            let mut events = Vec::new();
            let a = &mut self.takes[i];
            // Close the open segment now: everything so far is safe.
            if let Err(e) = a.take.suspend(&mut events) {
                tracing::error!(take = %a.info.take_id, error = format!("{e:#}"), "could not close the segment");
            }
            let (id, at) = (a.info.take_id.clone(), a.take.position());
            self.emit_events(&id, events);
            hit.push((id, at));
        }
        if hit.is_empty() {
            hit.push((String::new(), 0));
        }
        for (take_id, at_sample) in hit {
            (self.out)(Output::DeviceLost {
                device: device.clone(),
                take_id,
                at_sample,
                reason: reason.clone(),
            });
        }
    }

    pub(super) fn back(&mut self, since: Instant) {
        let rate = self.live.as_ref().map_or(48_000, |l| l.cap.sample_rate);
        let gap = (since.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        let mut hit: Vec<String> = Vec::new();
        for a in &mut self.takes {
            a.take.note_gap(gap, "device lost");
            hit.push(a.info.take_id.clone());
        }
        if hit.is_empty() {
            hit.push(String::new());
        }
        tracing::info!(device = %self.device, gap_frames = gap, "capture device back");
        for take_id in hit {
            (self.out)(Output::DeviceBack {
                device: self.device.clone(),
                take_id,
                gap_frames: gap,
            });
        }
    }
}
