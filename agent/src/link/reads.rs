//! Serving the controller's `ReadFile` requests (it pulls takes) on one
//! session: a reader thread that never competes with capture.
//!
//! - Off the engine thread and the runtime: its own thread, at the idle
//!   I/O priority class (the disk serves it only when nothing else asks),
//!   reading with `pread` from files `take::listing::open_listed` allows.
//! - Bounded: at most [`QUEUED`] requests wait (more are answered at once
//!   with "busy: ask again"), at most [`IN_FLIGHT`] answers wait for the
//!   link, so at most `(QUEUED + IN_FLIGHT) × MAX_CHUNK_LEN` bytes are held.
//! - `transfer.max_bytes_per_second` caps what it reads (0: no cap).
//! - The link sends its answers after everything else it has (commands'
//!   replies, events, meters, heartbeats: see `link::serve`), one chunk at
//!   a time, so control never waits behind more than one chunk.
//!
//! Threads: the link task owns `Reads`; the reader thread owns the files
//! it has open. Dropping `Reads` ends the thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rakkr_protocol::{AgentMsg, FileChunk, FileRead, FileReadFailed};

/// Requests waiting for the reader.
pub const QUEUED: usize = 16;
/// Answers waiting for the link.
pub const IN_FLIGHT: usize = 4;

pub struct Reads {
    requests: std::sync::mpsc::SyncSender<FileRead>,
    /// Answers, in request order.
    pub answers: tokio::sync::mpsc::Receiver<AgentMsg>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").finish_non_exhaustive()
    }
}

impl Reads {
    /// Starts the reader for takes in `recordings`; `cap()` is the
    /// transfer cap in force (bytes per second, 0: none), asked before
    /// each read so that a pushed change applies at once.
    pub fn start(recordings: PathBuf, cap: Box<dyn Fn() -> u64 + Send>) -> std::io::Result<Self> {
        let (requests, rx) = std::sync::mpsc::sync_channel(QUEUED);
        let (tx, answers) = tokio::sync::mpsc::channel(IN_FLIGHT);
        std::thread::Builder::new()
            .name("take-reads".into())
            .spawn(move || {
                idle_io_priority();
                let mut reader = Reader {
                    recordings,
                    open: None,
                    pace: Pace::new(cap()),
                };
                while let Ok(req) = rx.recv() {
                    reader.pace.rate = cap();
                    if tx.blocking_send(reader.serve(req)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { requests, answers })
    }

    /// Queues `req`; the answer comes on `answers`. `Err` is an answer to
    /// send at once (over a limit, or too many waiting).
    pub fn submit(&self, req: FileRead) -> Result<(), Box<AgentMsg>> {
        if let Err(e) = req.check_limits() {
            return Err(Box::new(failed(&req, e.to_string())));
        }
        self.requests.try_send(req).map_err(|e| {
            let req = match e {
                std::sync::mpsc::TrySendError::Full(r)
                | std::sync::mpsc::TrySendError::Disconnected(r) => r,
            };
            Box::new(failed(
                &req,
                format!("busy: {QUEUED} reads already wait on this node; ask again"),
            ))
        })
    }
}

fn failed(req: &FileRead, reason: String) -> AgentMsg {
    AgentMsg::FileReadFailed(FileReadFailed {
        request_id: req.request_id,
        take_id: req.take_id.clone(),
        file: req.file.clone(),
        reason,
    })
}

struct Reader {
    recordings: PathBuf,
    /// The file read last (consecutive reads of one file skip the checks'
    /// manifest read).
    open: Option<(String, String, File, u64)>,
    pace: Pace,
}

impl Reader {
    fn serve(&mut self, req: FileRead) -> AgentMsg {
        let same = self
            .open
            .as_ref()
            .is_some_and(|(t, f, ..)| *t == req.take_id && *f == req.file);
        // NOTE: the manifest changes while a take records; it is read fresh
        // for it, never cached.
        if !same || req.file == crate::take::manifest::FILE_NAME {
            match crate::take::listing::open_listed(&self.recordings, &req.take_id, &req.file) {
                Ok((f, size)) => self.open = Some((req.take_id.clone(), req.file.clone(), f, size)),
                Err(why) => {
                    self.open = None;
                    return failed(&req, why);
                }
            }
        }
        let Some((_, _, file, size)) = self.open.as_ref() else {
            return failed(&req, "not open".into());
        };
        let want = u64::from(req.len).min(size.saturating_sub(req.offset)) as usize;
        let mut data = vec![0u8; want];
        let mut got = 0;
        // Bounded: each turn reads at least one byte or stops.
        while got < want {
            match file.read_at(&mut data[got..], req.offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.open = None;
                    return failed(&req, format!("reading {}: {e}", req.file));
                }
            }
        }
        data.truncate(got);
        self.pace.spend(got as u64);
        AgentMsg::FileChunk(FileChunk {
            request_id: req.request_id,
            take_id: req.take_id,
            file: req.file,
            offset: req.offset,
            data,
        })
    }
}

/// A byte-rate cap: sleeps so that the bytes spent average out at `rate`.
struct Pace {
    rate: u64,
    next: Instant,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            next: Instant::now(),
        }
    }

    fn spend(&mut self, bytes: u64) {
        if let Some(wait) = self.wait_after(bytes, Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    /// How long to wait at `now` after spending `bytes` so that the
    /// average stays at `rate` (`None`: go on at once).
    fn wait_after(&mut self, bytes: u64, now: Instant) -> Option<Duration> {
        if self.rate == 0 {
            return None;
        }
        // Idle time is not saved up: the cap holds from now.
        self.next = self.next.max(now) + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        (self.next > now).then(|| self.next - now)
    }
}

/// Puts this thread in the idle I/O class: its reads are served only when
/// the disk has nothing else to do (capture's writes come first).
/// See: https://man7.org/linux/man-pages/man2/ioprio_set.2.html
#[allow(unsafe_code)]
fn idle_io_priority() {
    const IOPRIO_WHO_PROCESS: nix::libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: nix::libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: nix::libc::c_long = 13;
    // SAFETY: ioprio_set takes three integers and touches no memory of
    // ours; `who` 0 with IOPRIO_WHO_PROCESS is the calling thread.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the take reader's I/O priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(take: &str, file: &str, offset: u64, len: u32) -> FileRead {
        FileRead {
            request_id: offset,
            take_id: take.into(),
            file: file.into(),
            offset,
            len,
        }
    }

    #[test]
    fn listed_files_come_back_byte_exact_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = crate::take::writer::tests::record_into(dir.path());
        let f = &m.files[0].file;
        let want = std::fs::read(dir.path().join("t1").join(f)).unwrap();
        let mut reader = Reader {
            recordings: dir.path().to_owned(),
            open: None,
            pace: Pace::new(0),
        };
        let mut got = Vec::new();
        // Bounded: the file is a few KiB, read 1,000 bytes at a time.
        for i in 0..1000u64 {
            match reader.serve(read("t1", f, i * 1000, 1000)) {
                AgentMsg::FileChunk(c) => {
                    assert_eq!(c.offset, i * 1000);
                    if c.data.is_empty() {
                        break;
                    }
                    got.extend(c.data);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, want);
        for (take, file) in [
            ("t1", "../t1/manifest.json"),
            ("..", "x"),
            ("t1", ".lock"),
            ("t1", "nope.flac"),
        ] {
            assert!(
                matches!(
                    reader.serve(read(take, file, 0, 10)),
                    AgentMsg::FileReadFailed(_)
                ),
                "{take}/{file}"
            );
        }
    }

    #[test]
    fn the_rate_cap_spaces_reads_to_its_rate_and_saves_no_idle_time() {
        let t0 = Instant::now();
        let mut p = Pace::new(1_000_000);
        p.next = t0;
        // 512 KiB at 1 MB/s: the next read waits 0.524288 s.
        assert_eq!(
            p.wait_after(524_288, t0),
            Some(Duration::from_micros(524_288))
        );
        // Two reads back to back add up.
        assert_eq!(
            p.wait_after(524_288, t0),
            Some(Duration::from_micros(1_048_576))
        );
        // After a long idle spell the cap starts again from then.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.wait_after(1_000, later), Some(Duration::from_millis(1)));
        assert_eq!(Pace::new(0).wait_after(u64::MAX, t0), None, "no cap");
    }

    #[test]
    fn a_read_over_the_chunk_limit_is_refused_before_it_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let reads = Reads::start(dir.path().to_owned(), Box::new(|| 0)).unwrap();
        let big = read("t1", "a.flac", 0, rakkr_protocol::MAX_CHUNK_LEN + 1);
        assert!(matches!(
            reads.submit(big).map_err(|e| *e),
            Err(AgentMsg::FileReadFailed(_))
        ));
    }
}
