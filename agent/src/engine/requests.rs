//! The engine's request side: start, stop, mark and status of takes, on
//! the engine thread between blocks.

use rakkr_protocol::{FailureCode, TakeInfo};

use super::thread::{Active, Engine};
use super::{Output, Refusal, Request, StartRequest, Status, take_format};
use crate::take::manifest::Manifest;
use crate::take::writer::{Ending, Take, TakeSpec};

impl Engine {
    pub(super) fn handle(&mut self, req: Request) {
        match req {
            Request::Start(r, reply) => {
                let _ = reply.send(self.start_timed(r));
            }
            Request::Stop(id, ending, reply) => {
                let _ = reply.send(self.stop(&id, ending));
            }
            Request::Listen(req, reply) => {
                let _ = reply.send(self.listen(&req));
            }
            Request::Reconfigure(r, reply) => {
                let _ = reply.send(self.reconfigure(*r));
            }
            Request::StopListen(why, reply) => {
                let was = self.listen.take().is_some();
                if was {
                    tracing::info!(why, "listen stream stopped");
                }
                let _ = reply.send(was);
            }
            Request::Mark(label, reply) => {
                let _ = reply.send(self.mark(&label));
            }
            Request::Status(reply) => {
                let _ = reply.send(Status {
                    take: self.takes.first().map(|a| self.info_now(a)),
                    takes: self
                        .takes
                        .iter()
                        .map(|a| self.running(a))
                        .chain(self.scheduled.iter().map(|s| rakkr_protocol::RunningTake {
                            take: s.info.clone(),
                            device_channels: s.req.channel_list.clone().unwrap_or_default(),
                            job_id: s.req.job_id.clone(),
                            duration_frames: 0,
                        }))
                        .collect(),
                    device: self.device.clone(),
                    device_ok: self.live.is_some() && self.lost.is_none(),
                    error: self.device_error.clone(),
                    frames: self.live.as_ref().map_or(0, |l| l.consumed),
                    lost: self.live.as_ref().map_or(0, |l| l.xruns + l.dropped),
                    rate: self.live.as_ref().map_or(0, |l| l.cap.sample_rate),
                    listening: self.listen.as_ref().map(|t| t.listening().clone()),
                    held: self.live.as_ref().map(|l| crate::inventory::audio::Held {
                        device: l.device.clone(),
                        channels: l.cap.channels,
                        rate: l.cap.sample_rate,
                        format: l.cap.format.to_string(),
                    }),
                });
            }
            Request::Receipt(id, receipts, reply) => {
                let res = match self.takes.iter_mut().find(|a| a.info.take_id == id) {
                    Some(a) => a
                        .take
                        .receive(&receipts)
                        .map(Some)
                        .map_err(|e| Refusal::new(FailureCode::Internal, format!("{e:#}"))),
                    _ => Ok(None),
                };
                let _ = reply.send(res);
            }
            Request::Shutdown(..) => {}
        }
    }

    /// Ends take `id` (empty: the one recording, when only one does),
    /// after moving in what the ring held when the stop came.
    fn stop(&mut self, id: &str, ending: Ending) -> Result<(TakeInfo, Manifest), Refusal> {
        if !id.is_empty() && self.cancel(id) {
            return Err(Refusal::new(
                FailureCode::InvalidArgument,
                format!(
                    "take {id} was scheduled and had not started: cancelled, nothing was recorded"
                ),
            ));
        }
        let id = match (id, self.takes.as_slice()) {
            (_, []) => {
                return Err(Refusal::new(
                    FailureCode::InvalidArgument,
                    "no take is recording",
                ));
            }
            ("", [one]) => one.info.take_id.clone(),
            ("", several) => {
                return Err(Refusal::new(
                    FailureCode::InvalidArgument,
                    format!(
                        "{} takes record ({}): name the one to stop",
                        several.len(),
                        several
                            .iter()
                            .map(|a| a.info.take_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            (id, takes) if !takes.iter().any(|a| a.info.take_id == id) => {
                return Err(Refusal::new(
                    FailureCode::InvalidArgument,
                    format!(
                        "take {id} is not recording (recording: {})",
                        takes
                            .iter()
                            .map(|a| a.info.take_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            (id, _) => id.to_owned(),
        };
        // Its duration or the disk may end it meanwhile.
        if let Some(ended) = self.catch_up().into_iter().find(|(i, _)| i.take_id == id) {
            return Ok(ended);
        }
        self.end_take(&id, ending).ok_or_else(|| {
            Refusal::new(FailureCode::Internal, format!("take {id} is not recording"))
        })
    }

    /// Puts `label` at the live position of every recording take; returns
    /// the position in the oldest.
    fn mark(&mut self, label: &str) -> Result<u64, Refusal> {
        // The live position: written frames plus what waits in the ring.
        let queued = self.live.as_ref().map_or(0, |l| {
            (l.cap.consumer.slots() / usize::from(l.cap.channels)) as u64
        });
        let mut first = None;
        for a in &mut self.takes {
            let at = a.take.position() + queued;
            a.take.mark(at, label);
            first.get_or_insert(at);
        }
        first.ok_or_else(|| Refusal::new(FailureCode::InvalidArgument, "no take is recording"))
    }

    /// What `RunningTakes` says of a take.
    pub(super) fn running(&self, a: &Active) -> rakkr_protocol::RunningTake {
        rakkr_protocol::RunningTake {
            take: self.info_now(a),
            device_channels: a.channels.iter().map(|&c| c as u16 + 1).collect(),
            job_id: a.job_id.clone(),
            duration_frames: a.limit.unwrap_or(0),
        }
    }

    pub(super) fn info_now(&self, a: &Active) -> TakeInfo {
        TakeInfo {
            frames: a.take.position(),
            segments: a.take.segments(),
            ..a.info.clone()
        }
    }

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
        let Some(live) = self.live.as_mut() else {
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
        let now_ms = crate::util::now_ms();
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
            .or(r.ends_at_ms.map(|e| (e - now_ms) * u64::from(rate) / 1000))
            .map(|f| f.max(1));
        // The take's first frame is the oldest pre-roll frame it gets.
        let pre_held = (pre_frames.min(live.preroll.len_frames(usize::from(have)))) as u64;
        let ends_at_ms = limit.map(|l| {
            (now_ms + l * 1000 / u64::from(rate)).saturating_sub(pre_held * 1000 / u64::from(rate))
        });
        let spec = TakeSpec {
            take_id: r.take_id.clone(),
            output: r
                .output
                .clone()
                .unwrap_or_else(|| self.cfg.recordings.clone()),
            container,
            segment_frames: ((segment.as_secs_f64() * f64::from(rate)).round() as u64).max(1),
            channel_names: picked
                .iter()
                .map(|&c| self.cfg.capture.channel_name(c as u16 + 1))
                .collect(),
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
        let origin = live.consumed - (pre.len() / usize::from(have)) as u64;
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
            pre_roll_frames: (pre.len() / usize::from(have)) as u64,
        };
        tracing::info!(take = %info.take_id, dir = %info.dir, channels, rate, format = ?container, pre_roll_frames = info.pre_roll_frames, backlog_frames = live.cap.consumer.slots() / usize::from(have), "take started");
        self.takes.push(Active {
            take,
            info: info.clone(),
            channels: picked,
            leading,
            limit,
            job_id: r.job_id.clone(),
            origin,
        });
        (self.out)(Output::Started(info.clone()));
        if !pre.is_empty() {
            self.write_from(self.takes.len() - 1, &pre);
        }
        Ok((info, false))
    }

    /// Starts (or renews, or changes) the listen stream on the open device.
    fn listen(
        &mut self,
        req: &rakkr_protocol::ListenRequest,
    ) -> Result<rakkr_protocol::Listening, Refusal> {
        let Some(live) = self.live.as_ref() else {
            return Err(Refusal::new(
                FailureCode::Busy,
                format!(
                    "no capture device to listen to: {}",
                    self.device_error.as_deref().unwrap_or("still opening")
                ),
            ));
        };
        let seq = self.listen.as_ref().map_or(0, |t| t.seq());
        let (tap, listening) =
            super::listen::Tap::new(req, live.cap.channels, live.cap.sample_rate, seq)
                .map_err(|e| Refusal::new(FailureCode::InvalidArgument, e))?;
        if self.listen.is_none() {
            tracing::info!(channels = ?listening.channels, rate = listening.rate, "listen stream started");
        }
        self.listen = Some(tap);
        Ok(listening)
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
