//! The recording take's side of the engine thread: writes blocks into
//! it, passes on its events, catches up with the ring when a stop comes,
//! and ends it.

use rakkr_protocol::TakeInfo;

use super::Output;
use super::thread::Engine;
use crate::take::manifest::Manifest;
use crate::take::writer::{Ending, Finished, MustStop, TakeEvent};

impl Engine {
    /// Writes captured frames (all device channels) into the take.
    pub(super) fn write_take(&mut self, block: &[i32]) {
        let (Some(live), Some(active)) = (self.live.as_ref(), self.take.as_mut()) else {
            return;
        };
        let ch = usize::from(live.cap.channels);
        let data: &[i32] = if active.channels == ch {
            block
        } else {
            self.sub.clear();
            for f in block.chunks_exact(ch) {
                self.sub.extend_from_slice(&f[..active.channels]);
            }
            &self.sub
        };
        let mut events = Vec::new();
        let res = active.take.write(data, &mut events);
        self.emit_take_events(events);
        let stop = match res {
            Ok(Some(MustStop(why))) => Some(Ending::early("disk", why)),
            Ok(None) => None,
            Err(e) => Some(Ending::early("error", format!("writing failed: {e:#}"))),
        };
        let reached = self
            .take
            .as_ref()
            .is_some_and(|a| a.limit.is_some_and(|l| a.take.position() >= l));
        if let Some(ending) = stop {
            self.end_take(ending);
        } else if reached {
            self.end_take(Ending::asked("duration"));
        }
    }

    /// Passes on what the take finished in the background (hashed segments)
    /// while no audio comes to drive `write`.
    pub(super) fn poll_take(&mut self) {
        let Some(active) = self.take.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        if let Err(e) = active.take.poll(&mut events) {
            tracing::error!(take = %active.info.take_id, error = format!("{e:#}"), "recording the hashes of a closed segment");
        }
        if !events.is_empty() {
            self.emit_take_events(events);
        }
    }

    pub(super) fn emit_take_events(&mut self, events: Vec<TakeEvent>) {
        let id = self
            .take
            .as_ref()
            .map(|a| a.info.take_id.clone())
            .unwrap_or_default();
        for event in events {
            (self.out)(Output::Take {
                take_id: id.clone(),
                event,
            });
        }
    }

    /// Moves into the recording take what the ring holds now: audio
    /// captured before a stop was asked for belongs to the take, and on a
    /// busy machine the ring runs behind the device (a writer starved for
    /// a while leaves seconds in it). Bounded by the ring's size. Returns
    /// the take when its duration or the disk ended it meanwhile.
    pub(super) fn catch_up(&mut self) -> Option<(TakeInfo, Manifest)> {
        self.ended = None;
        let ch = usize::from(self.live.as_ref()?.cap.channels);
        let mut left = self.live.as_ref()?.cap.consumer.slots() / ch;
        while left > 0 && self.take.is_some() {
            match self.step_upto(left) {
                0 => break,
                moved => left -= moved,
            }
        }
        if self.take.is_some() {
            None
        } else {
            self.ended.take()
        }
    }

    /// Ends the recording take (if any): closes its files, reports it.
    /// The take is always reported as ended (the agent records again at
    /// once); when its final manifest could not be written, the reason says
    /// so and the next start's recovery finishes the take directory.
    pub(super) fn end_take(&mut self, ending: Ending) -> Option<(TakeInfo, Manifest)> {
        let a = self.take.take()?;
        let info = self.info_now(&a);
        let mut events = Vec::new();
        let Finished {
            mut manifest,
            persisted,
        } = a.take.finish(ending, &mut events);
        for event in events {
            (self.out)(Output::Take {
                take_id: info.take_id.clone(),
                event,
            });
        }
        if let Err(e) = persisted {
            tracing::error!(take = %info.take_id, error = format!("{e:#}"), "could not write the final manifest; every file is closed, and the take is finished by `recover` at the next start");
            let what = format!(
                "the final manifest could not be written ({e:#}); every file is closed, and `recover` (run at every start) finishes the take directory"
            );
            manifest.stop_reason = Some(match manifest.stop_reason.take() {
                Some(r) => format!("{r}; {what}"),
                None => what,
            });
            manifest.status = crate::take::manifest::TakeStatus::Stopped;
        }
        tracing::info!(take = %info.take_id, frames = manifest.frames, status = ?manifest.status, "take ended");
        self.ended = Some((info.clone(), manifest.clone()));
        self.apply_pending();
        (self.out)(Output::Stopped {
            info: info.clone(),
            manifest: Box::new(manifest.clone()),
        });
        Some((info, manifest))
    }
}
