//! Spreading one segment's files over the cores.
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

use anyhow::{Context, anyhow};

use super::encoder::TrackWriter;
use super::manifest::FileEntry;

/// A file being written and its manifest entry (`samples`/`sha256` unset).
pub type Track = (TrackWriter, FileEntry);

/// Fewest files per encoder thread: below this one thread does it all.
const MIN_TRACKS_PER_THREAD: usize = 4;

/// Frames de-interleaved at a time: 256 frames of 32 channels are 32 KiB,
/// which stay in the L1/L2 cache while every channel is gathered from them.
const TILE_FRAMES: usize = 256;

/// De-interleaves `block` into mono writers `group` (channels `first..`)
/// one cache-sized tile at a time; each encodes as its frames fill up.
fn feed(group: &mut [Track], first: usize, block: &[i32], channels: usize) -> anyhow::Result<()> {
    for tile in block.chunks(TILE_FRAMES * channels) {
        for (i, (w, _)) in group.iter_mut().enumerate() {
            w.push_channel(tile, first + i, channels)?;
        }
    }
    Ok(())
}

enum Job {
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
    fn start(
        n: usize,
        mut group: Vec<Track>,
        first: usize,
        channels: usize,
    ) -> anyhow::Result<Self> {
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done) = sync_channel::<Done>(1);
        let thread = std::thread::Builder::new()
            .name(format!("rakkr-enc-{n}"))
            .spawn(move || {
                for job in job_rx {
                    let reply = match job {
                        Job::Feed(block) => {
                            let r = feed(&mut group, first, &block, channels);
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
            .context("starting an encoder thread")?;
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

pub struct Spread {
    own: Vec<Track>,
    workers: Vec<Worker>,
    shared: Arc<Vec<i32>>,
}

impl Spread {
    /// Splits `tracks` over the cores (mono files of a `channels`-channel
    /// capture; one multichannel file stays on the writer thread).
    pub fn new(tracks: Vec<Track>, channels: usize) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = cores.min(tracks.len() / MIN_TRACKS_PER_THREAD).max(1);
        Self::with_threads(tracks, channels, threads)
    }

    /// `new` with the number of threads (the writer's included) given.
    fn with_threads(
        mut tracks: Vec<Track>,
        channels: usize,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let per = tracks.len().div_ceil(threads).max(1);
        let mut workers = Vec::new();
        let mut rest = tracks.split_off(per.min(tracks.len()));
        let mut first = per;
        while !rest.is_empty() {
            let tail = rest.split_off(per.min(rest.len()));
            let n = rest.len();
            workers.push(Worker::start(workers.len() + 1, rest, first, channels)?);
            first += n;
            rest = tail;
        }
        Ok(Self {
            own: tracks,
            workers,
            shared: Arc::new(Vec::new()),
        })
    }

    /// Encodes interleaved `block` (whole frames of `channels`).
    pub fn write(&mut self, block: &[i32], channels: usize) -> anyhow::Result<()> {
        if self.workers.is_empty() {
            return match self.own.as_mut_slice() {
                [(w, _)] if channels > 1 => w.write(block),
                group => feed(group, 0, block, channels),
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
            |own| feed(own, 0, block, channels),
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
        let mut tracks = std::mem::take(&mut self.own);
        let mut err = None;
        for w in &self.workers {
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
    use crate::record::encoder::tests::{decode, signal};
    use crate::record::encoder::{Container, TrackWriter};

    #[test]
    fn workers_encode_their_channels_and_give_every_track_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ch = 9;
        let tracks: Vec<Track> = (0..ch)
            .map(|c| {
                let file = format!("{c}.flac");
                let w = TrackWriter::create(
                    &dir.path().join(&file),
                    Container::Flac,
                    1,
                    48_000,
                    "t",
                    None,
                )
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
            .collect();
        let mut spread = Spread::with_threads(tracks, ch, 3).unwrap();
        assert_eq!(spread.workers.len(), 2, "two workers beside the writer");
        let input = signal(ch, 20_011);
        for block in input.chunks(ch * 1_500) {
            spread.write(block, ch).unwrap();
        }
        spread.sync().unwrap();
        let (tracks, err) = spread.into_tracks();
        assert!(err.is_none());
        assert_eq!(tracks.len(), ch);
        for (c, (w, entry)) in tracks.into_iter().enumerate() {
            assert_eq!(entry.file, format!("{c}.flac"), "channel order kept");
            let (path, frames) = w.finish().unwrap();
            assert_eq!(frames, 20_011);
            let (_, got) = decode(&path);
            let want: Vec<i32> = input.iter().skip(c).step_by(ch).copied().collect();
            assert_eq!(got, want, "channel {c} bit-exact");
        }
    }
}
