//! The engine's request side: start, stop, mark and status of takes, on
//! the engine thread between blocks.

use rakkr_protocol::{FailureCode, TakeInfo};

use super::thread::{Active, Engine};
use super::{Refusal, Request, Status};
use crate::take::manifest::Manifest;
use crate::take::writer::Ending;

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
            Request::Renamed(r, reply) => {
                let _ = reply.send(self.renamed(&r));
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
    /// Each take recording a renamed channel notes it at its live position.
    fn renamed(&mut self, r: &super::Renamed) -> Vec<rakkr_protocol::TakeAt> {
        let queued = self.queued_frames();
        let mut out = Vec::new();
        for a in &mut self.takes {
            let at = a.take.position() + queued;
            let mut noted = false;
            for (i, &dev) in a.channels.iter().enumerate() {
                if r.device_channels.contains(&(dev as u16 + 1)) {
                    a.take.rename(crate::take::manifest::Rename {
                        at_sample: at,
                        channel: i as u16 + 1,
                        console_channel: r.console_channel,
                        from: r.from.clone(),
                        to: r.to.clone(),
                    });
                    noted = true;
                }
            }
            if noted {
                out.push(rakkr_protocol::TakeAt {
                    take_id: a.info.take_id.clone(),
                    at_sample: at,
                });
            }
        }
        out
    }

    /// Frames waiting in the ring: a take's live position is what it has
    /// written plus these.
    fn queued_frames(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| {
            (l.cap.consumer.slots() / usize::from(l.cap.channels)) as u64
        })
    }

    fn mark(&mut self, label: &str) -> Result<u64, Refusal> {
        let queued = self.queued_frames();
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
