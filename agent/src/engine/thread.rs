//! The engine thread: keeps the capture device open (reopening it when it
//! comes back, see `device`), drains the ring into meters, pre-roll and the
//! recording take, and serves requests between blocks (see `requests`).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use rakkr_protocol::TakeInfo;

use super::meter::Meter;
use super::preroll::PreRoll;
use super::{Handle, Output, Request, StartRequest};
use crate::capture::Capture;
use crate::config::{CaptureConfig, DiskGuard};
use crate::take::writer::{Ending, Take};

/// Frames moved from the ring per step.
const BLOCK_FRAMES: usize = 4096;
/// No audio for this long: the device is reported lost (stalled).
pub(super) const STALL: Duration = Duration::from_secs(2);
/// Between attempts to open a missing device.
pub(super) const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Device, channels, rate, format, segment length, names, pre-roll.
    pub capture: CaptureConfig,
    pub recordings: PathBuf,
    pub disk: DiskGuard,
    /// Start these takes as soon as the device opens, before any audio is
    /// read (the `record` CLI: the take holds the stream from its first
    /// frame; interrupted takes that continue).
    pub autostart: Vec<StartRequest>,
    /// The node's clock against the controller's, for take manifests
    /// (`None`: no controller, e.g. the `record` CLI).
    pub clock: Option<tokio::sync::watch::Receiver<Option<crate::health::clock::Estimate>>>,
    /// Where scheduled takes are kept across restarts (`None`: not kept,
    /// e.g. the `record` CLI).
    pub schedule_file: Option<PathBuf>,
    /// What the agent sees of the console: take channels are named after
    /// its channels (`None`: no console task, e.g. the `record` CLI).
    pub console: Option<tokio::sync::watch::Receiver<std::sync::Arc<crate::console::ConsoleView>>>,
}

impl EngineConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            capture: c.capture.clone(),
            recordings: c.recordings_path.clone(),
            disk: c.disk.clone(),
            autostart: Vec::new(),
            clock: None,
            schedule_file: None,
            console: None,
        }
    }
}

impl Engine {
    /// The clock's state for a take starting now.
    pub(super) fn clock_now(&self) -> crate::take::manifest::ClockAtStart {
        let estimate = self.cfg.clock.as_ref().and_then(|c| *c.borrow());
        crate::take::manifest::ClockAtStart {
            started_at_ms: 0,
            skew_ms: estimate.map(|e| e.offset_ms),
            skew_rtt_ms: estimate.map(|e| e.rtt_ms),
            skew_measured_at_ms: estimate.map(|e| e.measured_at_ms),
            synchronized: crate::health::system::clock_sync().synchronized,
        }
    }
}

pub(super) struct Active {
    pub(super) take: Take,
    pub(super) info: TakeInfo,
    /// Device channels it records (0-based), in its order.
    pub(super) channels: Vec<usize>,
    /// Whether `channels` is the device's first N in order (no copy).
    pub(super) leading: bool,
    pub(super) limit: Option<u64>,
    /// The controller's job it serves (may be empty).
    pub(super) job_id: String,
    pub(super) container: crate::take::encoder::Container,
    /// The filesystem its directory is on (see `shed`).
    pub(super) dev: u64,
    /// Ring-stream position (frames read) of the take's first frame.
    pub(super) origin: u64,
}

pub(super) struct Live {
    pub(super) cap: Capture,
    pub(super) device: String,
    pub(super) meter: Meter,
    pub(super) preroll: PreRoll,
    pub(super) xruns: u64,
    /// Frames lost so far (overflow and xruns) and to overflow alone.
    pub(super) dropped: u64,
    pub(super) overflow: u64,
    /// Frames read from the ring since the stream opened.
    pub(super) consumed: u64,
    /// Losses not yet reported (reports are at most one per second).
    pub(super) unreported: Option<(u64, u64, Instant)>,
}

pub struct Engine {
    pub(super) cfg: EngineConfig,
    pub(super) live: Option<Live>,
    pub(super) device: String,
    pub(super) device_error: Option<String>,
    pub(super) next_open: Instant,
    /// The takes recording, oldest first (at most `capture.max_takes`).
    pub(super) takes: Vec<Active>,
    /// Since when audio is missing (device lost or stalled).
    pub(super) lost: Option<Instant>,
    pub(super) last_audio: Instant,
    pub(super) sub: Vec<i32>,
    /// The block being processed (reused).
    pub(super) block: Vec<i32>,
    /// The live listen stream, while one is asked for.
    pub(super) listen: Option<super::listen::Tap>,
    /// Takes waiting for their first frame (see `schedule`).
    pub(super) scheduled: Vec<super::schedule::Scheduled>,
    /// When `shed` last looked at free space.
    pub(super) shed_checked: Instant,
    /// Thread CPU ns per sample of each format, once measured (see `admit`).
    pub(super) costs: [Option<f64>; 3],
    /// Capture settings that wait for the recording take to end.
    pub(super) pending: Option<CaptureConfig>,
    /// Takes that ended while a stop caught up (what that stop replies
    /// when its take was among them).
    /// (Only while catching up: `None` otherwise.)
    pub(super) ended: Option<Vec<(TakeInfo, crate::take::manifest::Manifest)>>,
    pub(super) out: Box<dyn FnMut(Output) + Send>,
}

impl Engine {
    /// Starts the engine thread; `out` receives everything it reports.
    pub fn spawn(
        cfg: EngineConfig,
        out: Box<dyn FnMut(Output) + Send>,
    ) -> anyhow::Result<(Handle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let engine = Engine {
            cfg,
            live: None,
            device: String::new(),
            device_error: None,
            next_open: Instant::now(),
            takes: Vec::new(),
            lost: None,
            last_audio: Instant::now(),
            sub: Vec::new(),
            block: Vec::new(),
            listen: None,
            ended: None,
            scheduled: Vec::new(),
            costs: [None; 3],
            shed_checked: Instant::now(),
            pending: None,
            out,
        };
        let thread = std::thread::Builder::new()
            .name("rakkr-engine".into())
            .spawn(move || engine.run(rx))?;
        Ok((Handle { tx }, thread))
    }

    fn run(mut self, rx: Receiver<Request>) {
        // Test fault: from a mark to the next stop the engine reads no
        // audio (it serves requests), as a writer starved on a busy
        // machine falls behind the device.
        let stall_after_mark = crate::build_info::fault("stall-after-mark");
        let mut stalled = false;
        loop {
            loop {
                let next = if stalled {
                    rx.recv().map_err(|_| TryRecvError::Disconnected)
                } else {
                    rx.try_recv()
                };
                match next {
                    Ok(Request::Shutdown(reason, done)) => {
                        self.catch_up();
                        self.end_all(&Ending::early("shutdown", reason));
                        let _ = done.send(());
                        return;
                    }
                    Ok(req) => {
                        match req {
                            Request::Mark(..) => stalled = stall_after_mark,
                            Request::Stop(..) => stalled = false,
                            _ => {}
                        }
                        self.handle(req);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.catch_up();
                        self.end_all(&Ending::early("shutdown", "the agent is shutting down"));
                        return;
                    }
                }
            }
            if self.live.is_none() {
                self.try_open();
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if !self.step() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    /// Moves one block from the ring. `false` when there was nothing.
    fn step(&mut self) -> bool {
        self.step_upto(BLOCK_FRAMES) > 0
    }

    /// Moves at most `max` frames (and one block) from the ring; returns
    /// how many it moved.
    pub(super) fn step_upto(&mut self, max: usize) -> usize {
        let Some(live) = self.live.as_mut() else {
            return 0;
        };
        let ch = usize::from(live.cap.channels);
        let mut frames = (live.cap.consumer.slots() / ch).min(BLOCK_FRAMES.min(max));
        // NOTE: a block never crosses a scheduled start either.
        if let Some(due) = self.next_due(self.live.as_ref().map_or(0, |l| l.consumed)) {
            let consumed = self.live.as_ref().map_or(0, |l| l.consumed);
            frames = frames.min((due - consumed) as usize);
        }
        // NOTE: a block never crosses a take's end: it ends on its frame.
        if let Some(left) = self
            .takes
            .iter()
            .filter_map(|a| a.limit.map(|l| l.saturating_sub(a.take.position())))
            .min()
        {
            frames = frames.min(left as usize);
        }
        self.check_counters();
        if frames == 0 {
            self.poll_take();
            self.check_device();
            return 0;
        }
        let Some(live) = self.live.as_mut() else {
            return 0;
        };
        let Ok(chunk) = live.cap.consumer.read_chunk(frames * ch) else {
            return 0;
        };
        let (a, b) = chunk.as_slices();
        // NOTE: one buffer for the engine's life: no allocation per block.
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.extend_from_slice(a);
        block.extend_from_slice(b);
        chunk.commit_all();
        live.consumed += frames as u64;
        if let Some(since) = self.lost.take() {
            self.back(since);
        }
        self.last_audio = Instant::now();
        self.process(&block);
        self.block = block;
        if !self.scheduled.is_empty() {
            self.start_due();
        }
        frames
    }

    fn process(&mut self, block: &[i32]) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if let Some(w) = live.meter.feed(block) {
            (self.out)(Output::Meter(Box::new(w)));
        }
        // NOTE: kept while takes record too: a take that starts beside
        // them may ask for pre-roll.
        live.preroll.push(block);
        if !self.takes.is_empty() {
            self.write_takes(block);
            self.shed();
        }
        // NOTE: after the take: listening never delays the recording.
        self.feed_listen(block);
    }

    fn feed_listen(&mut self, block: &[i32]) {
        let (Some(tap), Some(live)) = (self.listen.as_mut(), self.live.as_ref()) else {
            return;
        };
        if tap.expired(Instant::now()) {
            tracing::info!("listen stream stopped: not renewed within its lease");
            self.listen = None;
            return;
        }
        let ch = usize::from(live.cap.channels);
        let rate = u64::from(live.cap.sample_rate.max(1));
        // Capture time of the block's first frame: now, less the block and
        // what still waits behind it in the ring.
        let behind = (block.len() / ch + live.cap.consumer.slots() / ch) as u64;
        let start_ms = crate::util::now_ms().saturating_sub(behind * 1000 / rate);
        let out = &mut self.out;
        tap.feed(block, ch, start_ms, &mut |f| out(Output::Listen(f)));
    }
}
