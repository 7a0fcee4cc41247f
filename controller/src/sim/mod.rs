//! A simulated console: ALSA test devices without sound hardware (see
//! docs/test-devices.md) and the checks of what an agent recorded from
//! them. The demo and the end-to-end tests use it.

pub mod check;
pub mod decode;
pub mod scenes;

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Writes an alsa-lib configuration defining `x32file`: a 32-channel
/// capture PCM (the `file` plugin over a `multi` of 32 channels over
/// `null`) that reads raw interleaved S32_LE from `infile`. Returns the
/// value for `ALSA_CONFIG_PATH`.
///
/// `x8file` is a view of its first 8 channels (a second device to switch
/// to).
pub fn x32_config_for(dir: &Path, infile: &Path) -> String {
    let mut bindings = String::new();
    for c in 0..32 {
        let _ = writeln!(bindings, "        {c} {{ slave a channel {c} }}");
    }
    let conf = format!(
        r#"pcm.x32null {{ type null hint {{ show off }} }}
pcm.x32multi {{
    type multi
    hint {{ show off }}
    slaves.a {{ pcm "x32null" channels 32 }}
    bindings {{
{bindings}    }}
}}
pcm.x32file {{
    type file
    slave.pcm "x32multi"
    file "/dev/null"
    infile {{ @func getenv vars [ X32_INFILE ] default "{infile}" }}
    format "raw"
    hint {{ show on description "X32 simulated" }}
}}
pcm.x8file {{
    type route
    slave {{ pcm "x32file" channels 32 }}
    ttable {{ {ttable}}}
    hint {{ show on description "Simulated 8-channel view" }}
}}
"#,
        ttable = (0..8).map(|c| format!("{c}.{c} 1 ")).collect::<String>(),
        infile = infile.display()
    );
    let path: PathBuf = dir.join("x32file.conf");
    std::fs::write(&path, conf).expect("writing the ALSA test config");
    format!("/usr/share/alsa/alsa.conf:{}", path.display())
}

/// The known test signal: channel `c` (0-based), frame `n` carries a
/// 24-bit value in an S32 container that names both, so channel order,
/// exact samples and gaps can all be checked.
pub fn x32_sample(c: usize, n: u64) -> i32 {
    (((c as i32) << 18) + (n & 0x3ffff) as i32) << 8
}

/// Writes `frames` frames of the known signal for `channels` channels as
/// raw interleaved S32_LE.
pub fn write_x32_signal(path: &Path, channels: usize, frames: u64) {
    let mut bytes = Vec::with_capacity(frames as usize * channels * 4);
    for n in 0..frames {
        for c in 0..channels {
            bytes.extend_from_slice(&x32_sample(c, n).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("writing the test signal");
}

/// Feeds the known signal into a FIFO at real-time pace, so that the
/// `x32file` device (with the FIFO as its `infile`) behaves like a console:
/// 48 000 frames per second, no faster.
///
/// NOTE: alsa-lib's `file` plugin fills whatever a `read` of its infile
/// does not return with silence, and cpal reads one period at a time. So
/// the feeder writes exactly one capture period per `write`, only when the
/// pipe has room for all of it (a write that fits is copied whole before a
/// reader wakes): every read then returns a whole period. The agent under
/// test must use the same period (`RAKKR_CAPTURE_BUFFER_FRAMES`). The FIFO
/// is opened `O_RDWR` so that opening and closing the device during
/// enumeration neither blocks nor breaks the pipe. Like a console the
/// feeder never waits: when its buffer (the pipe, [`MAX_QUEUED`] periods)
/// is full, the frames due now are never written and the signal carries on
/// at the current position, so gaps show in the content — and each is
/// recorded in the device's [`DropLog`], so a test can tell audio the
/// device dropped (a reader late on a busy machine) from audio the agent
/// lost. NOTE: the feeder never reads the pipe itself (an old version
/// emptied it, racing the reader's reads and splitting periods).
/// See: docs/test-devices.md
/// What a simulated device dropped: ranges `[start, end)` of signal
/// frames it never delivered, in order, adjacent ranges merged.
#[derive(Debug, Clone, Default)]
pub struct DropLog(std::sync::Arc<std::sync::Mutex<Vec<std::ops::Range<u64>>>>);

impl DropLog {
    pub fn push(&self, r: std::ops::Range<u64>) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match v.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => v.push(r),
        }
    }

    pub fn ranges(&self) -> Vec<std::ops::Range<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A console's signal: `signal(first, frames, out)` appends frames
/// `first..first + frames` (interleaved S32_LE) to `out`.
pub type Signal = Box<dyn FnMut(u64, u64, &mut Vec<u8>) + Send>;

#[derive(Debug)]
pub struct PacedFeeder {
    drops: DropLog,
    fed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Bytes the feeder's pipe holds.
const PIPE_BYTES: usize = 1 << 20;
/// Periods of audio the "device" buffers for a reader that is late.
const MAX_QUEUED_PERIODS: usize = 8;

nix::ioctl_read_bad!(fionread, nix::libc::FIONREAD, nix::libc::c_int);

/// Bytes waiting in the pipe.
#[allow(unsafe_code)]
fn queued(pipe: &std::fs::File) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // at a live local; the descriptor is open for the call.
    let _ = unsafe { fionread(pipe.as_raw_fd(), &mut n) };
    usize::try_from(n).unwrap_or(0)
}

impl PacedFeeder {
    /// Creates the FIFO at `fifo` and starts feeding `channels` channels of
    /// `x32_sample` at `rate`, `period` frames per write, for at most
    /// `limit` (a bound for tests).
    pub fn start(
        fifo: &Path,
        channels: usize,
        rate: u32,
        period: u64,
        limit: std::time::Duration,
    ) -> Self {
        let counter = move |first: u64, frames: u64, out: &mut Vec<u8>| {
            for k in first..first + frames {
                for c in 0..channels {
                    out.extend_from_slice(&x32_sample(c, k).to_le_bytes());
                }
            }
        };
        Self::start_with(fifo, channels, rate, period, limit, Box::new(counter))
    }

    /// The same with another signal: `signal(first, frames, out)` appends
    /// frames `first..first + frames` (interleaved S32_LE, `channels` per
    /// frame) to `out`.
    pub fn start_with(
        fifo: &Path,
        channels: usize,
        rate: u32,
        period: u64,
        limit: std::time::Duration,
        mut signal: Signal,
    ) -> Self {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::Ordering;
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("creating the FIFO");
        let mut pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
            .expect("opening the FIFO");
        let size = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32))
            .expect("growing the pipe") as usize;
        let fed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drops = DropLog::default();
        let (f, s, d) = (fed.clone(), stop.clone(), drops.clone());
        let chunk_bytes = period as usize * channels * 4;
        assert!(chunk_bytes <= size, "a period must fit in the pipe");
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut chunk = Vec::with_capacity(chunk_bytes);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) && start.elapsed() < limit {
                let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                while n + period <= due {
                    if queued(&pipe) + chunk_bytes > MAX_QUEUED_PERIODS * chunk_bytes {
                        // Nobody read in time (the agent is not running,
                        // or late): what is due now is lost, and logged.
                        let to = due / period * period;
                        d.push(n..to);
                        n = to;
                        break;
                    }
                    chunk.clear();
                    signal(n, period, &mut chunk);
                    assert_eq!(chunk.len(), chunk_bytes, "the signal wrote one period");
                    let w = pipe.write(&chunk).expect("feeding the FIFO");
                    assert_eq!(w, chunk.len(), "a write that fits goes in whole");
                    n += period;
                }
                f.store(n, Ordering::Release);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        Self {
            drops,
            fed,
            stop,
            thread: Some(thread),
        }
    }

    /// The device position: the next frame it will deliver. Frames before
    /// it were written into the FIFO or skipped because nobody read them;
    /// the pipe may hold up to `MAX_QUEUED_PERIODS` periods not yet read.
    pub fn fed(&self) -> u64 {
        self.fed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What it dropped so far (a live view).
    pub fn drops(&self) -> DropLog {
        self.drops.clone()
    }
}

/// Most periods waiting in the pipe.
pub const MAX_QUEUED: u64 = MAX_QUEUED_PERIODS as u64;

impl Drop for PacedFeeder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
