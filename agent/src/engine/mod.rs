//! The recorder: one engine thread that owns the capture stream and the
//! recording take, and the handle the rest of the agent talks to it with.
//!
//! Threads: cpal's realtime callback fills the ring (see `capture`); the
//! engine thread (here) drains it — meters, pre-roll, take files — and
//! answers requests; the daemon's async side sends requests and turns the
//! engine's outputs into events and meter frames. Nothing here waits on
//! the network: with the controller gone, takes go on and events queue.

mod admit;
mod device;
pub mod events;
pub mod listen;
pub mod meter;
mod pick;
mod preroll;
pub mod reconfigure;
mod recording;
mod requests;
mod schedule;
pub mod scheduled_file;
mod shed;
mod start;
pub mod thread;

use std::path::PathBuf;
use std::time::Duration;

use rakkr_protocol::{FailureCode, TakeFormat, TakeInfo};
use tokio::sync::oneshot;

use crate::take::encoder::Container;
use crate::take::manifest::Manifest;
use crate::take::writer::{Ending, TakeEvent};

pub use thread::{Engine, EngineConfig};

/// A refused or failed request: the code for the controller, and a
/// message that says what to do.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: FailureCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub take_id: String,
    /// Record the first N channels (`None`: all captured).
    pub channels: Option<u16>,
    /// Or these 1-based device channels, in this order.
    pub channel_list: Option<Vec<u16>>,
    /// Refused while any other take records (a plain `StartTake`).
    pub exclusive: bool,
    /// The controller's job it serves (may be empty).
    pub job_id: String,
    /// What admission (`admit`) would refuse is only a warning: an
    /// operator at the `record` CLI asked for this take, and recording
    /// what fits beats recording nothing.
    pub admit_anyway: bool,
    pub container: Option<Container>,
    pub segment: Option<Duration>,
    /// Audio from before the request (capped by the pre-roll buffer).
    pub pre_roll: Duration,
    /// Stop by itself after this many frames (the `record` CLI)...
    pub frames: Option<u64>,
    /// ...or after this long (at the device's rate).
    pub duration: Option<Duration>,
    /// Start / end at these times of the controller's clock (ms since the
    /// epoch; 0: now / not by time); see `schedule`.
    pub start_at_ms: u64,
    pub end_at_ms: u64,
    /// Or start at this time of our clock (a scheduled take kept across a
    /// restart, see `scheduled_file`).
    pub at_ms: Option<u64>,
    /// Or at this time of our clock (ms since the epoch: a take that
    /// continues one a crash interrupted ends when it would have).
    pub ends_at_ms: Option<u64>,
    /// Exactly this many frames of pre-roll (instead of `pre_roll`).
    pub pre_roll_frames: Option<u64>,
    /// Directory for the take directory (`None`: the recordings path).
    pub output: Option<PathBuf>,
    /// The interrupted take this one continues (see `take/resume.rs`).
    pub continues: Option<String>,
}

impl StartRequest {
    /// Take `take_id` as the node's settings say: every channel, now,
    /// beside other takes, until stopped.
    pub fn named(take_id: &str) -> Self {
        Self {
            take_id: take_id.to_owned(),
            channels: None,
            channel_list: None,
            exclusive: false,
            job_id: String::new(),
            admit_anyway: false,
            container: None,
            segment: None,
            pre_roll: Duration::ZERO,
            frames: None,
            duration: None,
            start_at_ms: 0,
            end_at_ms: 0,
            at_ms: None,
            ends_at_ms: None,
            pre_roll_frames: None,
            output: None,
            continues: None,
        }
    }
}

/// What `status` reports.
#[derive(Debug, Clone)]
pub struct Status {
    /// The oldest take recording.
    pub take: Option<TakeInfo>,
    /// Every take recording, oldest first.
    pub takes: Vec<rakkr_protocol::RunningTake>,
    /// The device in use (empty before one was opened).
    pub device: String,
    pub device_ok: bool,
    /// Why no device could be opened (the last attempt's error).
    pub error: Option<String>,
    /// Frames read from the device since its stream opened (0: no stream).
    pub frames: u64,
    /// Xruns and frames lost since the stream opened (any change: a loss).
    pub lost: u64,
    /// The stream's sample rate (0: no stream).
    pub rate: u32,
    /// The live listen stream, if one runs.
    pub listening: Option<rakkr_protocol::Listening>,
    /// The capture held open now (for the inventory of a busy device).
    pub held: Option<crate::inventory::audio::Held>,
}

impl Status {
    /// The device in use, or why there is none.
    pub fn device_or_error(&self) -> String {
        if self.device.is_empty() {
            self.error.clone().unwrap_or_default()
        } else {
            self.device.clone()
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// A console channel's new name (see `console/task.rs`).
#[derive(Debug, Clone)]
pub struct Renamed {
    pub device_channels: Vec<u16>,
    pub console_channel: u16,
    pub from: String,
    pub to: String,
}

#[derive(Debug)]
pub enum Request {
    Start(StartRequest, Reply<(TakeInfo, bool)>),
    /// Ends the take (an empty id: whichever records), as `Ending` says.
    Stop(String, Ending, Reply<(TakeInfo, Manifest)>),
    Mark(String, Reply<u64>),
    /// A console channel was renamed: noted, with its position, in every
    /// take recording one of these 1-based device channels.
    Renamed(Renamed, oneshot::Sender<Vec<rakkr_protocol::TakeAt>>),
    Status(oneshot::Sender<Status>),
    /// Receipts for the recording take (`None` when `take_id` is not it).
    Receipt(
        String,
        Vec<rakkr_protocol::FileReceipt>,
        Reply<Option<crate::take::receipt::Outcome>>,
    ),
    /// Ends a recording take cleanly (status `stopped`, with the reason)
    /// and stops the engine.
    Shutdown(String, oneshot::Sender<()>),
    /// Starts, renews or changes the live listen stream.
    Listen(
        rakkr_protocol::ListenRequest,
        Reply<rakkr_protocol::Listening>,
    ),
    /// Stops it; answers whether one ran (`why` goes to the log).
    StopListen(&'static str, oneshot::Sender<bool>),
    /// New capture settings and disk guard (see `reconfigure`).
    Reconfigure(
        Box<reconfigure::Reconfigure>,
        oneshot::Sender<rakkr_protocol::Reopen>,
    ),
}

/// What the engine reports as it runs.
#[derive(Debug, Clone)]
pub enum Output {
    Started(TakeInfo),
    Take {
        take_id: String,
        event: TakeEvent,
    },
    Stopped {
        info: TakeInfo,
        manifest: Box<Manifest>,
    },
    Xrun {
        take_id: String,
        at_sample: u64,
        frames_lost: u64,
    },
    DeviceLost {
        device: String,
        take_id: String,
        at_sample: u64,
        reason: String,
    },
    DeviceBack {
        device: String,
        take_id: String,
        gap_frames: u64,
    },
    /// A meter window: the frame for the controller, sums for health.
    Meter(Box<meter::Window>),
    /// An `autostart` take could not start.
    StartFailed {
        refusal: Refusal,
    },
    /// A frame of the live listen stream.
    Listen(rakkr_protocol::ListenFrame),
}

pub fn take_format(c: Container) -> TakeFormat {
    c.wire()
}

pub fn container(f: TakeFormat) -> Container {
    match f {
        TakeFormat::Flac => Container::Flac,
        TakeFormat::Wav => Container::Wav,
        TakeFormat::W64 => Container::W64,
    }
}

/// The sending side of the engine's request channel.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: std::sync::mpsc::Sender<Request>,
}

fn gone() -> Refusal {
    Refusal::new(FailureCode::Internal, "the recorder engine is not running")
}

impl Handle {
    pub async fn start(&self, req: StartRequest) -> Result<(TakeInfo, bool), Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Start(req, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn stop(
        &self,
        take_id: String,
        ending: Ending,
    ) -> Result<(TakeInfo, Manifest), Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Stop(take_id, ending, tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn mark(&self, label: String) -> Result<u64, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Mark(label, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Notes a console rename in the takes recording its channels; answers
    /// where it happened in each.
    pub async fn renamed(
        &self,
        device_channels: Vec<u16>,
        console_channel: u16,
        from: String,
        to: String,
    ) -> Result<Vec<rakkr_protocol::TakeAt>, Refusal> {
        let (tx, rx) = oneshot::channel();
        let r = Renamed {
            device_channels,
            console_channel,
            from,
            to,
        };
        self.tx.send(Request::Renamed(r, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    pub async fn status(&self) -> Result<Status, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Status(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Records receipts for the recording take `take_id`; `None` when it
    /// is not the recording take (the caller records them itself).
    pub async fn receipt(
        &self,
        take_id: String,
        receipts: Vec<rakkr_protocol::FileReceipt>,
    ) -> Result<Option<crate::take::receipt::Outcome>, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Receipt(take_id, receipts, tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn listen(
        &self,
        req: rakkr_protocol::ListenRequest,
    ) -> Result<rakkr_protocol::Listening, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Listen(req, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn reconfigure(
        &self,
        r: reconfigure::Reconfigure,
    ) -> Result<rakkr_protocol::Reopen, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Reconfigure(Box::new(r), tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    pub async fn stop_listen(&self, why: &'static str) -> Result<bool, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::StopListen(why, tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Stops the listen stream without waiting (the link dropped).
    pub fn end_listen(&self, why: &'static str) {
        let (tx, _) = oneshot::channel();
        let _ = self.tx.send(Request::StopListen(why, tx));
    }

    /// Stops a recording take cleanly and ends the engine thread.
    /// Closes a recording take (its manifest says `reason`) and stops.
    pub async fn shutdown(&self, reason: String) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown(reason, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
