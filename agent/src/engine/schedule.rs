//! Takes that start or end at a time of the controller's clock: converted
//! to ours with the skew the link measured, then to a frame of the
//! capture stream. A start in the past reaches back through the pre-roll
//! as far as it holds; one in the future waits in `scheduled` and starts
//! on its exact frame (a block never crosses it). An end time becomes the
//! take's length in frames.
//!
//! Scheduled takes are kept across restarts (`scheduled_file`).

use rakkr_protocol::{FailureCode, TakeInfo};

use super::thread::Engine;
use super::{Refusal, StartRequest, take_format};

/// A take waiting for its first frame.
#[derive(Debug)]
pub(super) struct Scheduled {
    pub(super) req: StartRequest,
    /// Our clock, ms since the epoch.
    pub(super) at_ms: u64,
    /// Stream position (frames read) of its first frame.
    pub(super) due: u64,
    pub(super) info: TakeInfo,
}

impl Engine {
    /// Our clock's time for the controller's time `ms`.
    fn ours(&self, controller_ms: u64) -> u64 {
        let offset = self
            .cfg
            .clock
            .as_ref()
            .and_then(|c| *c.borrow())
            .map_or(0, |e| e.offset_ms);
        (controller_ms as i64 - offset).max(0) as u64
    }

    /// The stream position of our time `at_ms` (before the stream: 0).
    fn position_of(&self, at_ms: u64) -> Option<u64> {
        let live = self.live.as_ref()?;
        let rate = u64::from(live.cap.sample_rate);
        let ch = usize::from(live.cap.channels);
        // What the device is capturing now: read frames plus the ring.
        let now_pos = live.consumed + (live.cap.consumer.slots() / ch) as u64;
        let now = crate::util::now_ms();
        Some(if at_ms >= now {
            now_pos + (at_ms - now) * rate / 1000
        } else {
            now_pos.saturating_sub((now - at_ms) * rate / 1000)
        })
    }

    /// Starts `r` at the controller's time `r.start_at_ms` (0: now) and
    /// sets its length from `r.end_at_ms`.
    pub(super) fn start_timed(&mut self, mut r: StartRequest) -> Result<(TakeInfo, bool), Refusal> {
        if let Some(s) = self.scheduled.iter().find(|s| s.req.take_id == r.take_id) {
            return Ok((s.info.clone(), true));
        }
        let bad = |m: String| Err(Refusal::new(FailureCode::InvalidArgument, m));
        let now = crate::util::now_ms();
        let start = match (r.at_ms, r.start_at_ms) {
            (Some(t), _) => t,
            (None, 0) => now,
            (None, t) => self.ours(t),
        };
        if start > now + rakkr_protocol::takes::START_AHEAD_MAX_MS {
            return bad(format!(
                "the start is {} s ahead; at most {} s",
                (start - now) / 1000,
                rakkr_protocol::takes::START_AHEAD_MAX_MS / 1000
            ));
        }
        if r.end_at_ms > 0 {
            let end = self.ours(r.end_at_ms);
            if end <= start.max(now) {
                return bad("the end time is not after the start".into());
            }
            // From the start (now, ahead, or reached back to through the
            // pre-roll) to the end.
            r.duration = Some(std::time::Duration::from_millis(end - start));
        }
        if r.start_at_ms == 0 && r.at_ms.is_none() {
            return self.start(r);
        }
        let Some(due) = self.position_of(start) else {
            return Err(Refusal::new(
                FailureCode::Busy,
                "no capture device to schedule on",
            ));
        };
        let consumed = self.live.as_ref().map_or(0, |l| l.consumed);
        if due <= consumed {
            // In the past: as far back as the pre-roll reaches.
            if r.at_ms.is_some() && now > start + 1000 {
                tracing::warn!(take = %r.take_id, late_ms = now - start, "a scheduled take starts late: the agent was not running at its start");
            }
            r.pre_roll_frames = Some(consumed - due);
            return self.start(r);
        }
        let max = usize::from(self.cfg.capture.max_takes);
        if self.takes.len() + self.scheduled.len() >= max {
            return Err(Refusal::new(
                FailureCode::Busy,
                format!("{max} takes record or wait already (capture.max_takes = {max})"),
            ));
        }
        super::start::validate_take_id(&r.take_id)?;
        let live = self.live.as_ref().expect("a position means a stream");
        let info = TakeInfo {
            take_id: r.take_id.clone(),
            dir: String::new(),
            device: live.device.clone(),
            channels: r
                .channel_list
                .as_ref()
                .filter(|l| !l.is_empty())
                .map_or(r.channels.unwrap_or(live.cap.channels), |l| l.len() as u16),
            sample_rate: live.cap.sample_rate,
            format: take_format(r.container.unwrap_or(self.cfg.capture.format)),
            frames: 0,
            segments: 0,
            started_at_ms: start,
            pre_roll_frames: 0,
        };
        // Checked now and again when it starts.
        let output = r
            .output
            .clone()
            .unwrap_or_else(|| self.cfg.recordings.clone());
        self.admit(&super::admit::Candidate {
            take_id: &r.take_id,
            channels: info.channels,
            container: r.container.unwrap_or(self.cfg.capture.format),
            frames: r
                .duration
                .map(|d| (d.as_secs_f64() * f64::from(info.sample_rate)).round() as u64),
            dir: &output,
        })?;
        tracing::info!(take = %r.take_id, at_ms = start, in_ms = start - now, "take scheduled");
        self.scheduled.push(Scheduled {
            req: r,
            at_ms: start,
            due,
            info: info.clone(),
        });
        self.keep_scheduled();
        Ok((info, false))
    }

    /// The next scheduled first frame after `consumed`, if any.
    pub(super) fn next_due(&self, consumed: u64) -> Option<u64> {
        self.scheduled
            .iter()
            .map(|s| s.due)
            .filter(|d| *d > consumed)
            .min()
    }

    /// Starts the scheduled takes whose first frame has come.
    pub(super) fn start_due(&mut self) {
        let Some((consumed, rate)) = self
            .live
            .as_ref()
            .map(|l| (l.consumed, u64::from(l.cap.sample_rate)))
        else {
            return;
        };
        // NOTE: a take more than half a second away is placed again from
        // its time at every block: the device's clock drifts from ours
        // (50 ppm is 4 s a day), and a stream just opened may first hand
        // over what its buffers held. Closer, its frame stays put.
        for i in 0..self.scheduled.len() {
            if self.scheduled[i].due > consumed + rate / 2
                && let Some(due) = self.position_of(self.scheduled[i].at_ms)
            {
                self.scheduled[i].due = due.max(consumed + 1);
            }
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|s| s.due <= consumed);
        self.scheduled = waiting;
        self.keep_scheduled();
        for mut s in due {
            s.req.pre_roll_frames = Some(consumed - s.due);
            let id = s.req.take_id.clone();
            if let Err(refusal) = self.start(s.req) {
                tracing::error!(take = %id, error = %refusal.message, "a scheduled take could not start");
                (self.out)(super::Output::StartFailed { refusal });
            }
        }
    }

    /// A new stream counts frames from 0: the scheduled takes' first
    /// frames are placed on it again from their times.
    pub(super) fn reschedule(&mut self) {
        for i in 0..self.scheduled.len() {
            let at = self.scheduled[i].at_ms;
            if let Some(due) = self.position_of(at) {
                self.scheduled[i].due = due;
            }
        }
    }

    /// Cancels the scheduled take `id`; whether there was one.
    pub(super) fn cancel(&mut self, id: &str) -> bool {
        let before = self.scheduled.len();
        self.scheduled.retain(|s| s.req.take_id != id);
        let cancelled = before != self.scheduled.len();
        if cancelled {
            self.keep_scheduled();
        }
        cancelled
    }

    /// Writes the scheduled takes to their file (see `scheduled_file`).
    /// A failure is logged: the takes still start on time unless the
    /// agent restarts before.
    fn keep_scheduled(&self) {
        let Some(path) = self.cfg.schedule_file.as_deref() else {
            return;
        };
        let kept: Vec<_> = self
            .scheduled
            .iter()
            .map(|s| super::scheduled_file::Kept::of(&s.req, s.at_ms))
            .collect();
        if let Err(e) = super::scheduled_file::save(path, &kept) {
            tracing::error!(
                error = format!("{e:#}"),
                "could not keep the scheduled takes: a restart would forget them"
            );
        }
    }
}
