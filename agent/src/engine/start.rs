//! Starting a take on the open capture: its channels, length and
//! pre-roll, admission (`admit`), its directory and files (`Take::start`),
//! and its place among the recording takes.

use rakkr_protocol::{FailureCode, TakeInfo};

use super::thread::{Active, Engine};
use super::{Output, Refusal, StartRequest, take_format};
use crate::take::writer::{Take, TakeSpec};

impl Engine {
    pub(super) fn start(&mut self, r: StartRequest) -> Result<(TakeInfo, bool), Refusal> {
        if let Some(a) = self.takes.iter().find(|a| a.info.take_id == r.take_id) {
            return Ok((self.info_now(a), true));
        }
        // NOTE: a plain StartTake (a controller that knows one take at a
        // time) is refused while another records, as it always was.
        if let Some(a) = self.takes.first().filter(|_| r.exclusive) {
            return Err(Refusal::new(
                FailureCode::Busy,
                format!("take {} is recording; stop it first", a.info.take_id),
            ));
        }
        let max = usize::from(self.cfg.capture.max_takes);
        if self.takes.len() >= max {
            return Err(Refusal::new(
                FailureCode::Busy,
                format!(
                    "{} takes record already, the most this node runs at once (capture.max_takes = {max})",
                    self.takes.len()
                ),
            ));
        }
        validate_take_id(&r.take_id)?;
        let clock = self.clock_now();
        let Some(live) = self.live.as_ref() else {
            return Err(Refusal::new(
                FailureCode::Busy,
                format!(
                    "no capture device: {}",
                    self.device_error.as_deref().unwrap_or("still opening")
                ),
            ));
        };
        let have = live.cap.channels;
        let picked = super::pick::channels(r.channel_list.as_deref(), r.channels, have)?;
        let channels = picked.len() as u16;
        let leading = picked.iter().enumerate().all(|(i, &c)| i == c);
        let rate = live.cap.sample_rate;
        let container = r.container.unwrap_or(self.cfg.capture.format);
        let segment = r.segment.unwrap_or(self.cfg.capture.segment);
        let pre_frames = r
            .pre_roll_frames
            .map_or((r.pre_roll.as_secs_f64() * f64::from(rate)) as usize, |f| {
                f as usize
            });
        // The take's first frame is the oldest pre-roll frame it gets.
        let pre_held = (pre_frames.min(live.preroll.len_frames(usize::from(have)))) as u64;
        // When its first frame was captured: before what waits in the ring
        // and the pre-roll it reaches back into.
        let backlog = (live.cap.consumer.slots() / usize::from(have)) as u64;
        let now_ms = crate::util::now_ms();
        let first_ms = now_ms.saturating_sub((backlog + pre_held) * 1000 / u64::from(rate));
        if let Some(end) = r.ends_at_ms.filter(|e| *e <= now_ms) {
            return Err(Refusal::new(
                FailureCode::InvalidArgument,
                format!(
                    "take {}: its end time passed {} ms ago",
                    r.take_id,
                    now_ms - end
                ),
            ));
        }
        let limit = r
            .frames
            .or(r
                .duration
                .map(|d| (d.as_secs_f64() * f64::from(rate)).round() as u64))
            .or(r
                .ends_at_ms
                .map(|e| e.saturating_sub(first_ms) * u64::from(rate) / 1000))
            .map(|f| f.max(1));
        let ends_at_ms = limit.map(|l| first_ms + l * 1000 / u64::from(rate));
        let output = r
            .output
            .clone()
            .unwrap_or_else(|| self.cfg.recordings.clone());
        let admitted = self.admit(&super::admit::Candidate {
            take_id: &r.take_id,
            channels,
            container,
            frames: limit,
            dir: &output,
        });
        match admitted {
            Err(refusal) if r.admit_anyway => {
                tracing::warn!(take = %r.take_id, "recording anyway: {refusal}");
            }
            other => other?,
        }
        let console = self.console_at_start(&picked);
        let live = self.live.as_mut().expect("checked above");
        let spec = TakeSpec {
            take_id: r.take_id.clone(),
            output,
            container,
            segment_frames: ((segment.as_secs_f64() * f64::from(rate)).round() as u64).max(1),
            // The console's name first, then the operator's, then "Input N".
            channel_names: picked
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    (console.as_ref())
                        .and_then(|k| k.channels.get(i)?.name.clone())
                        .unwrap_or_else(|| self.cfg.capture.channel_name(c as u16 + 1))
                })
                .collect(),
            console,
            device_channels: if leading {
                Vec::new()
            } else {
                picked.iter().map(|&c| c as u16 + 1).collect()
            },
            job_id: (!r.job_id.is_empty()).then(|| r.job_id.clone()),
            ends_at_ms,
            device: live.device.clone(),
            disk: self.cfg.disk.clone(),
            sample_rate: rate,
            capture_format: live.cap.format.to_string(),
            threads: crate::take::spread::Threads::Auto,
            continues: r.continues.clone(),
            clock: Some(clock),
        };
        let take = Take::start(spec)
            .map_err(|e| Refusal::new(FailureCode::InvalidArgument, format!("{e:#}")))?;
        let pre = live.preroll.last(pre_frames * usize::from(have));
        // NOTE: `pre` holds exactly `pre_held` frames.
        let origin = live.consumed - pre_held;
        let info = TakeInfo {
            take_id: r.take_id.clone(),
            dir: take.dir().display().to_string(),
            device: live.device.clone(),
            channels,
            sample_rate: rate,
            format: take_format(container),
            frames: 0,
            segments: 1,
            started_at_ms: (take.started_at().unix_timestamp_nanos() / 1_000_000) as u64,
            pre_roll_frames: pre_held,
        };
        tracing::info!(take = %info.take_id, dir = %info.dir, channels, rate, format = ?container, pre_roll_frames = info.pre_roll_frames, backlog_frames = backlog, "take started");
        // NOTE: 0 if it cannot be read (it was just made): shed as one.
        let dev =
            std::fs::metadata(take.dir()).map_or(0, |m| std::os::unix::fs::MetadataExt::dev(&m));
        self.takes.push(Active {
            take,
            info: info.clone(),
            channels: picked,
            leading,
            limit,
            job_id: r.job_id.clone(),
            container,
            dev,
            origin,
        });
        (self.out)(Output::Started(info.clone()));
        if !pre.is_empty() {
            self.write_from(self.takes.len() - 1, &pre);
        }
        Ok((info, false))
    }

    /// The console as the console task last saw it, for a take recording
    /// device channels `picked` (0-based): `None` without a console found.
    fn console_at_start(&self, picked: &[usize]) -> Option<crate::take::manifest::ConsoleAtStart> {
        let view = self.cfg.console.as_ref()?.borrow().clone();
        let id = view.identity()?;
        Some(crate::take::manifest::ConsoleAtStart {
            family: id.family,
            model: id.model,
            name: id.name,
            firmware: id.firmware,
            serial: id.serial,
            address: id.address,
            channels: picked
                .iter()
                .enumerate()
                .map(|(i, &c)| crate::take::manifest::ConsoleChannel {
                    channel: i as u16 + 1,
                    console_channel: view.console_channel_of(c as u16 + 1),
                    name: view.name_of(c as u16 + 1).map(str::to_owned),
                })
                .collect(),
        })
    }
}

/// A take id becomes a directory name: keep it to a safe alphabet.
pub fn validate_take_id(id: &str) -> Result<(), Refusal> {
    if crate::take::listing::valid_id(id) {
        Ok(())
    } else {
        Err(Refusal::new(
            FailureCode::InvalidArgument,
            format!("take id {id:?} must be 1-128 of A-Z a-z 0-9 - _ . and not start with a dot"),
        ))
    }
}
