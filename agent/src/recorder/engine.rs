//! The engine thread: keeps the capture device open (reopening it when it
//! comes back), drains the ring into meters, pre-roll and the recording
//! take, and serves requests between blocks.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use rakkr_protocol::{FailureCode, TakeInfo};

use super::meter::Meter;
use super::preroll::PreRoll;
use super::{Handle, Output, Refusal, Request, StartRequest, Status, take_format};
use crate::capture::{self, Capture, CaptureSpec};
use crate::config::{DeviceSelector, DiskGuard};
use crate::inventory::{audio, select};
use crate::record::encoder::Container;
use crate::record::manifest::Manifest;
use crate::record::take::{MustStop, Take, TakeEvent, TakeSpec};

/// Frames moved from the ring per step.
const BLOCK_FRAMES: usize = 4096;
/// No audio for this long: the device is reported lost (stalled).
const STALL: Duration = Duration::from_secs(2);
/// Between attempts to open a missing device.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub device: DeviceSelector,
    pub channels: Option<u16>,
    pub sample_rate: u32,
    pub buffer_frames: Option<u32>,
    pub pre_roll: Duration,
    pub recordings: PathBuf,
    pub container: Container,
    pub segment: Duration,
    pub channel_names: Vec<String>,
    pub disk: DiskGuard,
    /// Start this take as soon as the device opens, before any audio is
    /// read (the `record` CLI: the take holds the stream from its first frame).
    pub autostart: Option<StartRequest>,
}

impl EngineConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            device: c.capture.device.clone(),
            channels: c.capture.channels,
            sample_rate: c.capture.sample_rate,
            buffer_frames: c.capture.buffer_frames,
            pre_roll: c.capture.pre_roll,
            recordings: c.recordings_path.clone(),
            container: c.capture.format,
            segment: c.capture.segment,
            channel_names: c.capture.channel_names.clone(),
            disk: c.disk.clone(),
            autostart: None,
        }
    }

    fn channel_name(&self, n: u16) -> String {
        self.channel_names
            .get(usize::from(n) - 1)
            .cloned()
            .unwrap_or_else(|| format!("Input {n}"))
    }
}

struct Active {
    take: Take,
    info: TakeInfo,
    channels: usize,
    limit: Option<u64>,
    /// Ring-stream position (frames read) of the take's first frame.
    origin: u64,
}

struct Live {
    cap: Capture,
    device: String,
    meter: Meter,
    preroll: PreRoll,
    xruns: u64,
    /// Frames lost so far (overflow and xruns) and to overflow alone.
    dropped: u64,
    overflow: u64,
    /// Frames read from the ring since the stream opened.
    consumed: u64,
    /// Losses not yet reported (reports are at most one per second).
    unreported: Option<(u64, u64, Instant)>,
}

pub struct Engine {
    cfg: EngineConfig,
    live: Option<Live>,
    device: String,
    device_error: Option<String>,
    next_open: Instant,
    take: Option<Active>,
    /// Since when audio is missing (device lost or stalled).
    lost: Option<Instant>,
    last_audio: Instant,
    sub: Vec<i32>,
    out: Box<dyn FnMut(Output) + Send>,
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
            take: None,
            lost: None,
            last_audio: Instant::now(),
            sub: Vec::new(),
            out,
        };
        let thread = std::thread::Builder::new()
            .name("rakkr-engine".into())
            .spawn(move || engine.run(rx))?;
        Ok((Handle { tx }, thread))
    }

    fn run(mut self, rx: Receiver<Request>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Request::Shutdown(done)) => {
                        self.end_take(None);
                        let _ = done.send(());
                        return;
                    }
                    Ok(req) => self.handle(req),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.end_take(None);
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

    fn try_open(&mut self) {
        if Instant::now() < self.next_open {
            return;
        }
        self.next_open = Instant::now() + RETRY;
        match self.open() {
            Ok(live) => {
                tracing::info!(device = %live.device, channels = live.cap.channels, rate = live.cap.sample_rate, format = %live.cap.format, "capture running");
                self.device = live.device.clone();
                self.device_error = None;
                self.live = Some(live);
                self.last_audio = Instant::now();
                if let Some(req) = self.cfg.autostart.take() {
                    if let Err(refusal) = self.start(req) {
                        (self.out)(Output::StartFailed { refusal });
                    }
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if self.device_error.as_deref() != Some(&msg) {
                    tracing::warn!(error = %msg, "no capture device; retrying every {RETRY:?}");
                    self.device_error = Some(msg);
                }
            }
        }
    }

    fn open(&self) -> anyhow::Result<Live> {
        let device = match &self.cfg.device {
            DeviceSelector::Exact(name) => name.clone(),
            other => match select::choose(other, &audio::discover()) {
                (Some(d), _) => d.name.clone(),
                (None, why) => anyhow::bail!("{why}"),
            },
        };
        let cap = capture::open(&CaptureSpec {
            device: device.clone(),
            channels: self.cfg.channels,
            sample_rate: self.cfg.sample_rate,
            buffer_frames: self.cfg.buffer_frames,
        })?;
        let ch = usize::from(cap.channels);
        let pre = (self.cfg.pre_roll.as_secs_f64() * f64::from(cap.sample_rate)) as usize;
        Ok(Live {
            meter: Meter::new(cap.channels, cap.sample_rate, &device),
            preroll: PreRoll::new(pre, ch),
            device,
            cap,
            xruns: 0,
            dropped: 0,
            overflow: 0,
            consumed: 0,
            unreported: None,
        })
    }

    /// Moves one block from the ring. `false` when there was nothing.
    fn step(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        let ch = usize::from(live.cap.channels);
        let mut frames = (live.cap.consumer.slots() / ch).min(BLOCK_FRAMES);
        if let Some(limit) = self.take.as_ref().and_then(|a| a.limit) {
            let pos = self.take.as_ref().map_or(0, |a| a.take.position());
            frames = frames.min((limit - pos) as usize);
        }
        self.check_counters();
        if frames == 0 {
            self.check_device();
            return false;
        }
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        let Ok(chunk) = live.cap.consumer.read_chunk(frames * ch) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        let mut block = Vec::with_capacity(a.len() + b.len());
        block.extend_from_slice(a);
        block.extend_from_slice(b);
        chunk.commit_all();
        live.consumed += frames as u64;
        if let Some(since) = self.lost.take() {
            self.back(since);
        }
        self.last_audio = Instant::now();
        self.process(&block);
        true
    }

    fn process(&mut self, block: &[i32]) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if let Some(m) = live.meter.feed(block) {
            (self.out)(Output::Meter(m));
        }
        if self.take.is_none() {
            live.preroll.push(block);
            return;
        }
        self.write_take(block);
    }

    /// Writes captured frames (all device channels) into the take.
    fn write_take(&mut self, block: &[i32]) {
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
            Ok(Some(MustStop(why))) => Some(why),
            Ok(None) => None,
            Err(e) => Some(format!("writing failed: {e:#}")),
        };
        let reached = self
            .take
            .as_ref()
            .is_some_and(|a| a.limit.is_some_and(|l| a.take.position() >= l));
        if stop.is_some() || reached {
            self.end_take(stop);
        }
    }

    fn emit_take_events(&mut self, events: Vec<TakeEvent>) {
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

    /// Turns xrun and overflow counters into manifest entries and (at
    /// most one per second) events.
    fn check_counters(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let xruns = live.cap.stats.xruns.load(Ordering::Relaxed);
        let overflow = live.cap.stats.dropped.load(Ordering::Relaxed);
        let dropped = overflow + live.cap.stats.xrun_lost.load(Ordering::Relaxed);
        if xruns != live.xruns || dropped != live.dropped {
            let lost = dropped - live.dropped;
            let at = live.cap.stats.last_drop_at.load(Ordering::Relaxed);
            // NOTE: `live.dropped` counts both kinds; an overflow moves
            // `overflow` past what was accounted before.
            let cause = if overflow > live.overflow {
                "ring overflow (the writer fell behind)"
            } else {
                "device xrun"
            };
            live.overflow = overflow;
            live.xruns = xruns;
            live.dropped = dropped;
            if let Some(a) = self.take.as_mut() {
                let pos = at.saturating_sub(a.origin);
                if a.limit.is_none_or(|l| pos < l) {
                    a.take.xrun(pos, lost, cause);
                }
            }
            let u = live.unreported.get_or_insert((at, 0, Instant::now()));
            u.1 += lost;
        }
        let Some((at, lost, since)) = live.unreported else {
            return;
        };
        if since.elapsed() < Duration::from_secs(1) {
            return;
        }
        live.unreported = None;
        tracing::warn!(frames_lost = lost, "audio lost (xrun or overflow)");
        let (take_id, at_sample) = match self.take.as_ref() {
            Some(a) => (a.info.take_id.clone(), at.saturating_sub(a.origin)),
            None => (String::new(), 0),
        };
        (self.out)(Output::Xrun {
            take_id,
            at_sample,
            frames_lost: lost,
        });
    }

    fn check_device(&mut self) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let gone = live.cap.stats.device_lost.load(Ordering::Acquire);
        if !gone && self.last_audio.elapsed() < STALL {
            return;
        }
        let reason = if gone {
            "the device went away".to_owned()
        } else {
            format!("no audio for {STALL:?}")
        };
        let device = live.device.clone();
        // NOTE: cpal ends a stream for good on device loss, and a stream
        // whose server died (JACK) never delivers again: drop it and build
        // a new one when the device is back. Dropping joins cpal's worker,
        // which a stalled plugin may block, so it happens off this thread.
        if let Some(dead) = self.live.take() {
            let _ = std::thread::Builder::new()
                .name("rakkr-drop-stream".into())
                .spawn(move || drop(dead));
        }
        self.next_open = Instant::now() + RETRY;
        if self.lost.is_some() {
            return; // Reported already; this was a reopen that stayed silent.
        }
        self.lost = Some(self.last_audio);
        tracing::warn!(device = %device, reason = %reason, "capture device lost");
        let mut events = Vec::new();
        let (take_id, at) = match self.take.as_mut() {
            Some(a) => {
                // Close the open segment now: everything so far is safe.
                if let Err(e) = a.take.suspend(&mut events) {
                    tracing::error!(error = format!("{e:#}"), "could not close the segment");
                }
                (a.info.take_id.clone(), a.take.position())
            }
            None => (String::new(), 0),
        };
        self.emit_take_events(events);
        (self.out)(Output::DeviceLost {
            device,
            take_id,
            at_sample: at,
            reason,
        });
    }

    fn back(&mut self, since: Instant) {
        let rate = self.live.as_ref().map_or(48_000, |l| l.cap.sample_rate);
        let gap = (since.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        let take_id = match self.take.as_mut() {
            Some(a) => {
                a.take.note_gap(gap, "device lost");
                a.info.take_id.clone()
            }
            None => String::new(),
        };
        tracing::info!(device = %self.device, gap_frames = gap, "capture device back");
        (self.out)(Output::DeviceBack {
            device: self.device.clone(),
            take_id,
            gap_frames: gap,
        });
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Start(r, reply) => {
                let _ = reply.send(self.start(r));
            }
            Request::Stop(id, reply) => {
                let res = match &self.take {
                    None => Err(Refusal::new(
                        FailureCode::InvalidArgument,
                        "no take is recording",
                    )),
                    Some(a) if !id.is_empty() && a.info.take_id != id => Err(Refusal::new(
                        FailureCode::InvalidArgument,
                        format!("take {id} is not recording (take {} is)", a.info.take_id),
                    )),
                    Some(_) => self.end_take(None).ok_or_else(|| {
                        Refusal::new(
                            FailureCode::Internal,
                            "the take could not be closed; see the agent log",
                        )
                    }),
                };
                let _ = reply.send(res);
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
                });
            }
            Request::Shutdown(_) => {}
        }
    }

    fn info_now(&self, a: &Active) -> TakeInfo {
        TakeInfo {
            frames: a.take.position(),
            segments: a.take.segments(),
            ..a.info.clone()
        }
    }

    fn start(&mut self, r: StartRequest) -> Result<(TakeInfo, bool), Refusal> {
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
        let container = r.container.unwrap_or(self.cfg.container);
        let segment = r.segment.unwrap_or(self.cfg.segment);
        let spec = TakeSpec {
            take_id: r.take_id.clone(),
            output: r
                .output
                .clone()
                .unwrap_or_else(|| self.cfg.recordings.clone()),
            container,
            segment_frames: ((segment.as_secs_f64() * f64::from(rate)).round() as u64).max(1),
            channel_names: (1..=channels).map(|n| self.cfg.channel_name(n)).collect(),
            device: live.device.clone(),
            disk: self.cfg.disk.clone(),
            sample_rate: rate,
            capture_format: live.cap.format.to_string(),
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

    /// Ends the recording take (if any): closes its files, reports it.
    fn end_take(&mut self, stopped: Option<String>) -> Option<(TakeInfo, Manifest)> {
        let a = self.take.take()?;
        let info = self.info_now(&a);
        let mut events = Vec::new();
        let res = a.take.finish(stopped, &mut events);
        for event in events {
            (self.out)(Output::Take {
                take_id: info.take_id.clone(),
                event,
            });
        }
        match res {
            Ok(manifest) => {
                tracing::info!(take = %info.take_id, frames = manifest.frames, status = ?manifest.status, "take ended");
                (self.out)(Output::Stopped {
                    info: info.clone(),
                    manifest: Box::new(manifest.clone()),
                });
                Some((info, manifest))
            }
            Err(e) => {
                tracing::error!(take = %info.take_id, error = format!("{e:#}"), "could not finish the take; `recover` will repair it");
                None
            }
        }
    }
}

/// A take id becomes a directory name: keep it to a safe alphabet.
pub fn validate_take_id(id: &str) -> Result<(), Refusal> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            FailureCode::InvalidArgument,
            format!("take id {id:?} must be 1-128 of A-Z a-z 0-9 - _ . and not start with a dot"),
        ))
    }
}
