//! Spreading one segment's files over the cores — when one is not enough.
//!
//! NOTE: one thread is the cheapest way to encode: on this project's 2-vCPU
//! test machine (two hyperthreads of one core, as cloud vCPUs usually are)
//! the same 32-file FLAC job took about 7 % more CPU time on two threads
//! than on one. So by default (`Threads::Auto`) a segment starts on the
//! writer thread alone and spreads over every core as soon as encoding
//! takes more than half of real time (`HIGH_LOAD`, checked every
//! `CHECK_SECONDS` of audio): a slow node, many channels, a high rate. It
//! never spreads back within the segment. `Threads::Fixed` (`encode
//! --threads`) sets the count.
//!
//! The files are split into groups of consecutive channels. The writer
//! thread encodes the first group itself; every other group belongs to a
//! worker thread for the whole segment (not a thread per block: blocks come
//! 10–100 times a second, and each spawn costs a clone, a stack and its page
//! faults). Per block the writer copies the interleaved block into one
//! shared buffer, each worker de-interleaves its channels from it, and the
//! writer waits for every worker before `write` returns: when `write` is
//! done, the block is in every encoder, as with one thread.
//!
//! Threads: the writer thread owns `Spread`, its own group and the shared
//! buffer (lent to the workers as an `Arc` for one block, so it is reused,
//! not reallocated); each worker owns its group until `into_tracks` takes
//! it back for closing.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::encoder::TrackWriter;
use super::manifest::FileEntry;

/// A file being written and its manifest entry (`samples`/`sha256` unset).
pub type Track = (TrackWriter, FileEntry);

/// Fewest files per encoder thread: below this one thread does it all.
const MIN_TRACKS_PER_THREAD: usize = 4;

/// Encoding time, as a share of the audio's duration, above which one
/// thread is not enough.
const HIGH_LOAD: f64 = 0.5;

/// Audio between two looks at the load: short enough that a writer far
/// too slow spreads long before the capture ring (2 s) fills.
const CHECK_SECONDS: f64 = 0.5;

/// How many threads encode a segment's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The writer thread alone while it keeps up easily; every core (at
    /// most one per `MIN_TRACKS_PER_THREAD` files) once it does not.
    Auto,
    /// This many, the writer's included (at least 1, at most one per file).
    Fixed(usize),
}

impl std::str::FromStr for Threads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Threads::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Threads::Fixed(n)),
                _ => Err(format!(
                    "{s:?}: want \"auto\" or a number of threads (1 or more)"
                )),
            },
        }
    }
}

/// Frames de-interleaved at a time: 256 frames of 32 channels are 32 KiB,
/// which stay in the L1/L2 cache while every channel is gathered from them.
const TILE_FRAMES: usize = 256;

/// De-interleaves `block` into mono writers `group` one cache-sized tile at
/// a time; each encodes as its frames fill up. After each tile, the FLAC
/// MD5s of the frames just encoded are hashed together (the files fill in
/// lockstep: one SIMD pass for all of them).
///
/// NOTE: each file's channel comes from its manifest entry (1-based), not
/// from its place in the group: a group may hold any channels (see
/// `with_threads`, which keeps files whose thread failed to start).
fn feed(group: &mut [Track], block: &[i32], channels: usize) -> anyhow::Result<()> {
    for tile in block.chunks(TILE_FRAMES * channels) {
        for (w, e) in group.iter_mut() {
            let c = usize::from(e.channels.first().copied().unwrap_or(1).max(1)) - 1;
            w.push_channel(tile, c, channels)?;
        }
        super::md5::update_together(group.iter_mut().filter_map(|(w, _)| w.md5_mut()));
    }
    Ok(())
}

enum Job {
    /// The worker's files (its first job).
    Adopt(Vec<Track>),
    Feed(Arc<Vec<i32>>),
    Sync,
    GiveBack,
}

enum Done {
    Ok,
    Failed(anyhow::Error),
    Tracks(Vec<Track>),
}

struct Worker {
    /// `None` only while dropping (closing it ends the thread).
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts worker `n` and hands it `group`; when either fails, the
    /// files come back untouched beside the error.
    fn start(
        n: usize,
        group: Vec<Track>,
        channels: usize,
    ) -> Result<Self, (anyhow::Error, Vec<Track>)> {
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done) = sync_channel::<Done>(1);
        let spawned = std::thread::Builder::new()
            .name(format!("rakkr-enc-{n}"))
            .spawn(move || {
                let mut group = Vec::new();
                for job in job_rx {
                    let reply = match job {
                        Job::Adopt(g) => {
                            group = g;
                            continue;
                        }
                        Job::Feed(block) => {
                            let r = feed(&mut group, &block, channels);
                            // NOTE: let go of the buffer before replying, so
                            // the writer can reuse it for the next block.
                            drop(block);
                            r
                        }
                        Job::Sync => group.iter_mut().try_for_each(|(w, _)| w.sync()),
                        Job::GiveBack => {
                            let _ = done_tx.send(Done::Tracks(std::mem::take(&mut group)));
                            return;
                        }
                    };
                    let reply = reply.map_or_else(Done::Failed, |()| Done::Ok);
                    if done_tx.send(reply).is_err() {
                        return;
                    }
                }
            })
            .context("starting an encoder thread");
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => return Err((e, group)),
        };
        match jobs.send(Job::Adopt(group)) {
            Ok(()) => {}
            Err(std::sync::mpsc::SendError(Job::Adopt(group))) => {
                return Err((anyhow!("an encoder thread stopped as it started"), group));
            }
            Err(_) => {
                return Err((
                    anyhow!("an encoder thread stopped as it started"),
                    Vec::new(),
                ));
            }
        }
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> anyhow::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| anyhow!("an encoder thread stopped (it panicked)"))
    }

    fn recv(&self) -> anyhow::Result<Done> {
        self.done
            .recv()
            .map_err(|_| anyhow!("an encoder thread stopped (it panicked)"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the thread (after its current job).
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches how long encoding takes against the audio it encodes.
struct Load {
    /// Sample rate: frames per second of audio.
    rate: f64,
    /// `HIGH_LOAD` (tests set their own).
    high: f64,
    busy: Duration,
    frames: u64,
}

impl Load {
    /// Counts one write; true when, over the last `CHECK_SECONDS` of
    /// audio, encoding took more than `HIGH_LOAD` of real time.
    fn too_high(&mut self, busy: Duration, frames: usize) -> bool {
        self.busy += busy;
        self.frames += frames as u64;
        let audio = self.frames as f64 / self.rate;
        if audio < CHECK_SECONDS {
            return false;
        }
        let load = self.busy.as_secs_f64() / audio;
        self.busy = Duration::ZERO;
        self.frames = 0;
        load > self.high
    }
}

pub struct Spread {
    own: Vec<Track>,
    workers: Vec<Worker>,
    shared: Arc<Vec<i32>>,
    channels: usize,
    /// Threads the files may spread over (the writer's included).
    most: usize,
    /// `Some` while `Threads::Auto` may still spread.
    load: Option<Load>,
}

impl Spread {
    /// Places `tracks` (mono files of a `channels`-channel capture at `rate`
    /// Hz; or one multichannel file, which stays on the writer thread).
    pub fn new(
        tracks: Vec<Track>,
        channels: usize,
        rate: u32,
        threads: Threads,
    ) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let most = cores.min(tracks.len() / MIN_TRACKS_PER_THREAD).max(1);
        Self::placed(tracks, channels, rate, threads, most)
    }

    /// `new` with the most threads `Auto` may use given.
    fn placed(
        tracks: Vec<Track>,
        channels: usize,
        rate: u32,
        threads: Threads,
        most: usize,
    ) -> anyhow::Result<Self> {
        let (start, load) = match threads {
            Threads::Auto => (
                1,
                (most > 1).then_some(Load {
                    rate: f64::from(rate.max(1)),
                    high: HIGH_LOAD,
                    busy: Duration::ZERO,
                    frames: 0,
                }),
            ),
            Threads::Fixed(n) => (n.clamp(1, tracks.len().max(1)), None),
        };
        let mut s = Self::with_threads(tracks, channels, start);
        s.most = most;
        s.load = load;
        Ok(s)
    }

    /// Threads encoding now (the writer's included).
    pub fn threads(&self) -> usize {
        1 + self.workers.len()
    }

    /// Splits `tracks` over `threads` threads (the writer's included).
    fn with_threads(mut tracks: Vec<Track>, channels: usize, threads: usize) -> Self {
        let most = threads;
        let per = tracks.len().div_ceil(threads).max(1);
        let mut workers = Vec::new();
        let mut rest = tracks.split_off(per.min(tracks.len()));
        while !rest.is_empty() {
            let tail = rest.split_off(per.min(rest.len()));
            match Worker::start(workers.len() + 1, rest, channels) {
                Ok(w) => workers.push(w),
                Err((e, group)) => {
                    // Fewer threads, every file still written.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        files = group.len(),
                        "an encoder thread did not start; the writer thread takes its files"
                    );
                    tracks.extend(group);
                }
            }
            rest = tail;
        }
        Self {
            own: tracks,
            workers,
            shared: Arc::new(Vec::new()),
            channels,
            most,
            load: None,
        }
    }

    /// Encodes interleaved `block` (whole frames of `channels`); spreads
    /// over more threads afterwards when `Auto` finds one not enough.
    pub fn write(&mut self, block: &[i32], channels: usize) -> anyhow::Result<()> {
        let t = Instant::now();
        self.encode(block, channels)?;
        if let Some(load) = self.load.as_mut()
            && load.too_high(t.elapsed(), block.len() / channels.max(1))
        {
            self.load = None;
            let before = self.threads();
            self.spread_over(self.most)?;
            tracing::info!(
                before,
                after = self.threads(),
                "encoding took more than half of real time on one thread: spread over more cores"
            );
        }
        Ok(())
    }

    /// Moves every file to a new split over `threads` threads, between two
    /// blocks (the encoders keep their state; nothing is closed).
    fn spread_over(&mut self, threads: usize) -> anyhow::Result<()> {
        let (tracks, err) = self.collect();
        if let Some(e) = err {
            // What is left stays on the writer thread, to be closed.
            self.own = tracks;
            return Err(e.context("moving files between encoder threads"));
        }
        let (channels, most) = (self.channels, self.most);
        *self = Self::with_threads(tracks, channels, threads);
        self.most = most;
        Ok(())
    }

    fn encode(&mut self, block: &[i32], channels: usize) -> anyhow::Result<()> {
        if self.workers.is_empty() {
            return match self.own.as_mut_slice() {
                [(w, _)] if channels > 1 => w.write(block),
                group => feed(group, block, channels),
            };
        }
        match Arc::get_mut(&mut self.shared) {
            Some(buf) => {
                buf.clear();
                buf.extend_from_slice(block);
            }
            None => self.shared = Arc::new(block.to_vec()),
        }
        let shared = Arc::clone(&self.shared);
        self.on_every_thread(
            || Job::Feed(Arc::clone(&shared)),
            |own| feed(own, block, channels),
        )
    }

    /// Makes everything written so far durable (each thread its own files).
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.on_every_thread(
            || Job::Sync,
            |own| own.iter_mut().try_for_each(|(w, _)| w.sync()),
        )
    }

    /// Sends each worker `job()`, runs `own` on the writer's group
    /// meanwhile, then waits for every worker it reached; the first error
    /// wins.
    fn on_every_thread(
        &mut self,
        job: impl Fn() -> Job,
        own: impl FnOnce(&mut [Track]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut first_err = None;
        let mut started = 0;
        for w in &self.workers {
            match w.send(job()) {
                Ok(()) => started += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                    break;
                }
            }
        }
        if let Err(e) = own(&mut self.own) {
            first_err.get_or_insert(e);
        }
        for w in &self.workers[..started] {
            match w.recv() {
                Ok(Done::Ok | Done::Tracks(_)) => {}
                Ok(Done::Failed(e)) | Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every track back, in channel order, for closing. A worker that died
    /// took its files with it (they stay as written; recovery repairs
    /// them): that is the error returned beside the tracks that are left.
    pub fn into_tracks(mut self) -> (Vec<Track>, Option<anyhow::Error>) {
        self.collect()
    }

    /// Takes every track back from the workers (which then end).
    fn collect(&mut self) -> (Vec<Track>, Option<anyhow::Error>) {
        let mut tracks = std::mem::take(&mut self.own);
        let mut err = None;
        for w in std::mem::take(&mut self.workers) {
            match w.send(Job::GiveBack).and_then(|()| w.recv()) {
                Ok(Done::Tracks(group)) => tracks.extend(group),
                Ok(Done::Ok) => {}
                Ok(Done::Failed(e)) | Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        (tracks, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::take::encoder::tests::{decode, signal};
    use crate::take::encoder::{Container, TrackWriter};

    fn tracks(dir: &std::path::Path, ch: usize) -> Vec<Track> {
        (0..ch)
            .map(|c| {
                let file = format!("{c}.flac");
                let w =
                    TrackWriter::create(&dir.join(&file), Container::Flac, 1, 48_000, "t", None)
                        .unwrap();
                let entry = FileEntry {
                    file,
                    segment: 1,
                    channels: vec![c as u16 + 1],
                    name: String::new(),
                    first_sample: 0,
                    samples: 0,
                    sha256: String::new(),
                };
                (w, entry)
            })
            .collect()
    }

    /// Closes every track and checks each holds its channel of `input`.
    fn assert_bit_exact(spread: Spread, input: &[i32], ch: usize) {
        let (tracks, err) = spread.into_tracks();
        assert!(err.is_none());
        assert_eq!(tracks.len(), ch);
        let frames = input.len() / ch;
        for (c, (w, entry)) in tracks.into_iter().enumerate() {
            assert_eq!(entry.file, format!("{c}.flac"), "channel order kept");
            let (path, n) = w.finish().unwrap();
            assert_eq!(n, frames as u64);
            let (_, got) = decode(&path);
            let want: Vec<i32> = input.iter().skip(c).step_by(ch).copied().collect();
            assert_eq!(got, want, "channel {c} bit-exact");
        }
    }

    #[test]
    fn workers_encode_their_channels_and_give_every_track_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ch = 9;
        let mut spread = Spread::with_threads(tracks(dir.path(), ch), ch, 3);
        assert_eq!(spread.workers.len(), 2, "two workers beside the writer");
        let input = signal(ch, 20_011);
        for block in input.chunks(ch * 1_500) {
            spread.write(block, ch).unwrap();
        }
        spread.sync().unwrap();
        assert_bit_exact(spread, &input, ch);
    }

    #[test]
    fn auto_starts_on_one_thread_and_spreads_mid_segment_when_one_is_not_enough() {
        let dir = tempfile::tempdir().unwrap();
        let ch = 9;
        // 2 kHz: the load is looked at every 1,000 frames; a threshold of 0
        // makes any encoding time too much for one thread.
        let mut spread =
            Spread::placed(tracks(dir.path(), ch), ch, 2_000, Threads::Auto, 3).unwrap();
        assert_eq!(spread.threads(), 1, "one thread to begin with");
        spread.load.as_mut().unwrap().high = 0.0;
        let input = signal(ch, 20_011);
        let mut blocks = input.chunks(ch * 1_500);
        spread.write(blocks.next().unwrap(), ch).unwrap();
        assert_eq!(spread.threads(), 3, "spread over every thread it may use");
        assert!(spread.load.is_none(), "and stays spread");
        for block in blocks {
            spread.write(block, ch).unwrap();
        }
        spread.sync().unwrap();
        assert_bit_exact(spread, &input, ch);
    }

    #[test]
    fn auto_stays_on_one_thread_while_it_keeps_up() {
        let dir = tempfile::tempdir().unwrap();
        let ch = 9;
        // 1 Hz: every frame is a second of audio, so encoding is always far
        // faster than real time.
        let mut spread = Spread::placed(tracks(dir.path(), ch), ch, 1, Threads::Auto, 3).unwrap();
        let input = signal(ch, 5_000);
        for block in input.chunks(ch * 1_000) {
            spread.write(block, ch).unwrap();
        }
        assert_eq!(spread.threads(), 1);
        assert_bit_exact(spread, &input, ch);
    }

    #[test]
    fn fixed_threads_are_used_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let ch = 9;
        let spread =
            Spread::placed(tracks(dir.path(), ch), ch, 48_000, Threads::Fixed(2), 3).unwrap();
        assert_eq!(spread.threads(), 2);
        assert!(spread.load.is_none());
        assert_bit_exact(spread, &[], ch);
    }

    #[test]
    fn threads_parse_from_the_command_line() {
        assert_eq!("auto".parse::<Threads>(), Ok(Threads::Auto));
        assert_eq!("4".parse::<Threads>(), Ok(Threads::Fixed(4)));
        assert!("0".parse::<Threads>().unwrap_err().contains("auto"));
        assert!("many".parse::<Threads>().is_err());
    }
}
