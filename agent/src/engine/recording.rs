//! The recording takes' side of the engine thread: writes each block into
//! every take (its own channels), passes on their events, catches up with
//! the ring when a stop comes, and ends them.

use rakkr_protocol::TakeInfo;

use super::Output;
use super::thread::Engine;
use crate::take::manifest::Manifest;
use crate::take::writer::{Ending, Finished, MustStop, TakeEvent};

impl Engine {
    /// Writes captured frames (all device channels) into every take.
    pub(super) fn write_takes(&mut self, block: &[i32]) {
        self.write_from(0, block);
    }

    /// Writes captured frames into the takes from the `first`th on (the
    /// newest alone: its pre-roll at start).
    pub(super) fn write_from(&mut self, first: usize, block: &[i32]) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let ch = usize::from(live.cap.channels);
        let mut endings = Vec::new();
        for i in first..self.takes.len() {
            let active = &mut self.takes[i];
            let data: &[i32] = if active.leading && active.channels.len() == ch {
                block
            } else {
                // NOTE: `sub` keeps its capacity: no allocation per block
                // once the widest take has been written.
                self.sub.clear();
                for f in block.chunks_exact(ch) {
                    if active.leading {
                        self.sub.extend_from_slice(&f[..active.channels.len()]);
                    } else {
                        self.sub.extend(active.channels.iter().map(|&c| f[c]));
                    }
                }
                &self.sub
            };
            let mut events = Vec::new();
            let res = active.take.write(data, &mut events);
            let reached = active.limit.is_some_and(|l| active.take.position() >= l);
            let ending = match res {
                Ok(Some(MustStop(why))) => Some(Ending::early("disk", why)),
                Err(e) => Some(Ending::early("error", format!("writing failed: {e:#}"))),
                Ok(None) if reached => Some(Ending::asked("duration")),
                Ok(None) => None,
            };
            // NOTE: the id is copied only when there is something to say
            // (most blocks have neither events nor an ending).
            if events.is_empty() && ending.is_none() {
                continue;
            }
            let id = active.info.take_id.clone();
            self.emit_events(&id, events);
            if let Some(ending) = ending {
                endings.push((id, ending));
            }
        }
        for (id, ending) in endings {
            self.end_take(&id, ending);
        }
    }

    /// Passes on what the takes finished in the background (hashed
    /// segments) while no audio comes to drive `write`.
    pub(super) fn poll_take(&mut self) {
        for i in 0..self.takes.len() {
            let mut events = Vec::new();
            let active = &mut self.takes[i];
            if let Err(e) = active.take.poll(&mut events) {
                tracing::error!(take = %active.info.take_id, error = format!("{e:#}"), "recording the hashes of a closed segment");
            }
            if !events.is_empty() {
                let id = active.info.take_id.clone();
                self.emit_events(&id, events);
            }
        }
    }

    pub(super) fn emit_events(&mut self, take_id: &str, events: Vec<TakeEvent>) {
        for event in events {
            (self.out)(Output::Take {
                take_id: take_id.to_owned(),
                event,
            });
        }
    }

    /// Moves into the recording takes what the ring holds now: audio
    /// captured before a stop was asked for belongs to the take, and on a
    /// busy machine the ring runs behind the device (a writer starved for
    /// a while leaves seconds in it). Bounded by the ring's size. Returns
    /// the takes their duration or the disk ended meanwhile.
    pub(super) fn catch_up(&mut self) -> Vec<(TakeInfo, Manifest)> {
        self.ended = Some(Vec::new());
        let Some(ch) = self.live.as_ref().map(|l| usize::from(l.cap.channels)) else {
            return self.ended.take().unwrap_or_default();
        };
        let mut left = self
            .live
            .as_ref()
            .map_or(0, |l| l.cap.consumer.slots() / ch);
        while left > 0 && !self.takes.is_empty() {
            match self.step_upto(left) {
                0 => break,
                moved => left -= moved,
            }
        }
        self.ended.take().unwrap_or_default()
    }

    /// Ends every take, oldest first.
    pub(super) fn end_all(&mut self, ending: &Ending) {
        let ids: Vec<String> = self.takes.iter().map(|a| a.info.take_id.clone()).collect();
        for id in ids {
            self.end_take(&id, ending.clone());
        }
    }

    /// Ends the take `id` (if it records): closes its files, reports it.
    /// The take is always reported as ended (the agent records again at
    /// once); when its final manifest could not be written, the reason says
    /// so and the next start's recovery finishes the take directory.
    pub(super) fn end_take(&mut self, id: &str, ending: Ending) -> Option<(TakeInfo, Manifest)> {
        let at = self.takes.iter().position(|a| a.info.take_id == id)?;
        let a = self.takes.remove(at);
        let info = self.info_now(&a);
        let mut events = Vec::new();
        let Finished {
            mut manifest,
            persisted,
        } = a.take.finish(ending, &mut events);
        self.emit_events(&info.take_id, events);
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
        if let Some(ended) = self.ended.as_mut() {
            ended.push((info.clone(), manifest.clone()));
        }
        if self.takes.is_empty() {
            self.apply_pending();
        }
        (self.out)(Output::Stopped {
            info: info.clone(),
            manifest: Box::new(manifest.clone()),
        });
        Some((info, manifest))
    }
}
