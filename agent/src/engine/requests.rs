//! The engine's request side: start, stop, mark and status of takes, on
//! the engine thread between blocks.

use rakkr_protocol::{FailureCode, TakeInfo};

use super::thread::{Active, Engine};
use super::{Output, Refusal, Request, StartRequest, Status, take_format};
use crate::take::writer::{Take, TakeSpec};

impl Engine {
    pub(super) fn handle(&mut self, req: Request) {
        match req {
            Request::Start(r, reply) => {
                let _ = reply.send(self.start(r));
            }
            Request::Stop(id, ending, reply) => {
                let res = match &self.take {
                    None => Err(Refusal::new(
                        FailureCode::InvalidArgument,
                        "no take is recording",
                    )),
                    Some(a) if !id.is_empty() && a.info.take_id != id => Err(Refusal::new(
                        FailureCode::InvalidArgument,
                        format!("take {id} is not recording (take {} is)", a.info.take_id),
                    )),
                    Some(_) => match self.catch_up() {
                        // Its duration or the disk ended it meanwhile.
                        Some(ended) => Ok(ended),
                        None => self.end_take(ending).ok_or_else(|| {
                            Refusal::new(FailureCode::Internal, "no take is recording")
                        }),
                    },
                };
                let _ = reply.send(res);
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
                let res = match self.take.as_mut() {
                    None => Err(Refusal::new(
                        FailureCode::InvalidArgument,
                        "no take is recording",
                    )),
                    Some(a) => {
                        // The live position: written frames plus what waits in the ring.
                        let queued = self.live.as_ref().map_or(0, |l| {
                            (l.cap.consumer.slots() / usize::from(l.cap.channels)) as u64
                        });
                        let at = a.take.position() + queued;
                        a.take.mark(at, &label);
                        Ok(at)
                    }
                };
                let _ = reply.send(res);
            }
            Request::Status(reply) => {
                let _ = reply.send(Status {
                    take: self.take.as_ref().map(|a| self.info_now(a)),
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
                let res = match self.take.as_mut() {
                    Some(a) if a.info.take_id == id => a
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

    pub(super) fn info_now(&self, a: &Active) -> TakeInfo {
        TakeInfo {
            frames: a.take.position(),
            segments: a.take.segments(),
            ..a.info.clone()
        }
    }

    pub(super) fn start(&mut self, r: StartRequest) -> Result<(TakeInfo, bool), Refusal> {
        if let Some(a) = &self.take {
            if a.info.take_id == r.take_id {
                return Ok((self.info_now(a), true));
            }
            return Err(Refusal::new(
                FailureCode::Busy,
                format!("take {} is recording; stop it first", a.info.take_id),
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
        let channels = r.channels.unwrap_or(have);
        if channels == 0 || channels > have {
            return Err(Refusal::new(
                FailureCode::InvalidArgument,
                format!("{channels} channels asked; the device delivers {have}"),
            ));
        }
        let rate = live.cap.sample_rate;
        let container = r.container.unwrap_or(self.cfg.capture.format);
        let segment = r.segment.unwrap_or(self.cfg.capture.segment);
        let spec = TakeSpec {
            take_id: r.take_id.clone(),
            output: r
                .output
                .clone()
                .unwrap_or_else(|| self.cfg.recordings.clone()),
            container,
            segment_frames: ((segment.as_secs_f64() * f64::from(rate)).round() as u64).max(1),
            channel_names: (1..=channels)
                .map(|n| self.cfg.capture.channel_name(n))
                .collect(),
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
        let pre_frames = (r.pre_roll.as_secs_f64() * f64::from(rate)) as usize;
        let pre = live.preroll.take_last(pre_frames * usize::from(have));
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
        self.take = Some(Active {
            take,
            info: info.clone(),
            channels: usize::from(channels),
            limit: r.frames,
            origin,
        });
        (self.out)(Output::Started(info.clone()));
        if !pre.is_empty() {
            self.write_take(&pre);
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
