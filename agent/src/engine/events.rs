//! The engine's outputs as link messages: events for the outbox (durable,
//! exactly once) and meter frames (best effort, latest wins).

use rakkr_protocol::{EventBody, TakeFile};

use super::Output;
use crate::take::manifest::{FileEntry, Manifest, TakeStatus};
use crate::take::writer::TakeEvent;

pub enum Outgoing {
    Event(EventBody),
    Meter(Box<super::meter::Window>),
    Listen(rakkr_protocol::ListenFrame),
}

fn file(e: FileEntry) -> TakeFile {
    TakeFile {
        file: e.file,
        channels: e.channels,
        first_sample: e.first_sample,
        samples: e.samples,
        sha256: e.sha256,
    }
}

pub fn manifest_json(m: &Manifest) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

fn status(s: TakeStatus) -> &'static str {
    match s {
        TakeStatus::Recording => "recording",
        TakeStatus::Complete => "complete",
        TakeStatus::Stopped => "stopped",
        TakeStatus::Recovered => "recovered",
    }
}

pub fn outgoing(o: Output) -> Option<Outgoing> {
    Some(Outgoing::Event(match o {
        Output::Meter(m) => return Some(Outgoing::Meter(m)),
        Output::Listen(f) => return Some(Outgoing::Listen(f)),
        Output::StartFailed { refusal } => {
            // Only a take that continues an interrupted one starts by
            // itself in the daemon.
            tracing::error!(%refusal, "the take continuing an interrupted one could not start");
            return None;
        }
        Output::Started(info) => EventBody::TakeStarted(info),
        Output::Take {
            take_id,
            event: TakeEvent::SegmentClosed { segment, files },
        } => EventBody::SegmentClosed {
            take_id,
            segment,
            files: files.into_iter().map(file).collect(),
        },
        Output::Take {
            take_id,
            event: TakeEvent::DiskLow { free_bytes, path },
        } => EventBody::DiskLow {
            take_id,
            free_bytes,
            path: path.display().to_string(),
        },
        Output::Stopped { info, manifest } => EventBody::TakeStopped {
            take_id: info.take_id,
            status: status(manifest.status).to_owned(),
            reason: manifest.stop_reason.clone().unwrap_or_default(),
            frames: manifest.frames,
            manifest_json: manifest_json(&manifest),
        },
        Output::Xrun {
            take_id,
            at_sample,
            frames_lost,
        } => EventBody::Xrun {
            take_id,
            at_sample,
            frames_lost,
        },
        Output::DeviceLost {
            device,
            take_id,
            at_sample,
            reason,
        } => EventBody::DeviceLost {
            device,
            take_id,
            at_sample,
            reason,
        },
        Output::DeviceBack {
            device,
            take_id,
            gap_frames,
        } => EventBody::DeviceBack {
            device,
            take_id,
            gap_frames,
        },
    }))
}

/// The event for a take `recover` repaired.
pub fn recovered(m: &Manifest) -> EventBody {
    EventBody::TakeRecovered {
        take_id: m.take_id.clone(),
        frames: m.frames,
        frames_saved: m.recovery.as_ref().map_or(0, |r| r.frames_saved),
        manifest_json: manifest_json(m),
    }
}
