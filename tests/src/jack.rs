//! The real-time test device (tier 2 of docs/test-devices.md):
//! JACK's dummy backend running at 48 kHz, our feeder client
//! (`rakkr-jack-feeder`) putting the known x32 signal on 32 ports, and the
//! ALSA `jack` PCM (`x32jack`) that turns them into a capture device —
//! paced by a clock, able to xrun when a reader stalls, and to vanish when
//! the server stops.
//!
//! Each device runs its own JACK server, passed to the feeder and the agent
//! through `JACK_DEFAULT_SERVER`, so tests can run in parallel without
//! touching this process's environment.
//!
//! NOTE: JACK's shared registry has 8 server slots (`MAX_SERVERS`), and a
//! server killed with SIGKILL keeps its slot until a server *of the same
//! name* starts. Unique names per test therefore leaked a slot per
//! `crash_server` until no JACK server could start on the machine ("Too
//! many servers already active"). So servers are named from a pool of
//! [`SLOTS`] names, each claimed with a file lock (across processes); a
//! slot left by a killed server is reclaimed by the next start under that
//! name. Slots left by other names (older runs) are cleared when no jackd
//! runs at all. See: jack2 `common/shm.c`, `jack_register_server`.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Period of the dummy backend, in frames.
pub const PERIOD: u32 = 256;

/// Server names in the pool; JACK's registry holds 8 servers.
pub const SLOTS: usize = 8;

/// What the device itself dropped, as its feeder reports it (cumulative
/// across server restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceDrops {
    /// Xruns the JACK server reported (a cycle it could not complete).
    pub xruns: u64,
    /// Frames of cycles the feeder was not run for.
    pub skipped: u64,
}

#[derive(Debug)]
pub struct JackDevice {
    pub server: String,
    /// Drops reported by the feeders of earlier servers, and the current one.
    drops: std::sync::Arc<std::sync::Mutex<(DeviceDrops, DeviceDrops)>>,
    /// Time the current feeder's device skipped: (signal frame, frames).
    time_skips: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    /// The signal frame the current feeder last said it was writing.
    signal_frame: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The slot's lock, held while the device lives.
    _slot: std::fs::File,
    feeder_bin: PathBuf,
    jackd: Option<Child>,
    feeder: Option<Child>,
}

/// Writes the ALSA configuration for `x32jack` (capture from the feeder's
/// 32 ports); returns the value for `ALSA_CONFIG_PATH`.
pub fn x32jack_config(dir: &Path) -> String {
    let mut ports = String::new();
    for c in 0..32 {
        let _ = writeln!(ports, "        {c} \"rakkr-feeder:out_{}\"", c + 1);
    }
    let conf = format!(
        "pcm.x32jack {{\n    type jack\n    capture_ports {{\n{ports}    }}\n    hint {{ show on description \"X32 simulated (JACK)\" }}\n}}\n"
    );
    let path = dir.join("x32jack.conf");
    std::fs::write(&path, conf).expect("writing the ALSA jack config");
    format!("/usr/share/alsa/alsa.conf:{}", path.display())
}

fn stop(child: &mut Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl JackDevice {
    /// Claims a server name from the pool and starts the JACK server and
    /// the feeder (`feeder_bin`).
    pub fn start(feeder_bin: &Path) -> Self {
        let (server, slot) = claim_slot();
        let mut d = Self {
            server,
            drops: Default::default(),
            time_skips: Default::default(),
            signal_frame: Default::default(),
            _slot: slot,
            feeder_bin: feeder_bin.to_owned(),
            jackd: None,
            feeder: None,
        };
        d.start_server();
        d
    }

    fn start_server(&mut self) {
        // NOTE: on a loaded machine jackd can take longer than any fixed
        // timeout to come up; so wait for the event — the server answering,
        // or jackd exiting — and start it again if it exited. Bounded: 5
        // starts, 120 s each.
        let log = std::env::temp_dir().join(format!("{}.jackd.log", self.server));
        let mut why = String::new();
        for attempt in 1..=5 {
            remove_stale_semaphores(&self.server);
            match self.spawn_jackd(&log) {
                Ok(()) => {
                    why.clear();
                    break;
                }
                Err(e) => {
                    why = format!("attempt {attempt}: {e}");
                    eprintln!("jackd {}: {why}", self.server);
                    if why.contains("Too many servers") {
                        clear_registry_if_no_jackd();
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        assert!(
            why.is_empty(),
            "jackd {} did not come up: {why}",
            self.server
        );
        // NOTE: on a loaded machine a JACK client can fail to open against
        // a server that just came up (its answer times out); the feeder
        // then exits at once, saying why on stderr. Bounded: 3 attempts.
        let mut failures = Vec::new();
        let (feeder, out) = loop {
            let mut feeder = Command::new(&self.feeder_bin)
                .env("JACK_DEFAULT_SERVER", &self.server)
                .env("JACK_NO_START_SERVER", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting rakkr-jack-feeder");
            let mut out = std::io::BufReader::new(feeder.stdout.take().expect("stdout"));
            let mut line = String::new();
            out.read_line(&mut line).expect("feeder output");
            if line.trim() == "feeding" {
                // Its stderr is drained from here on (a closed pipe would
                // kill it at its next warning).
                if let Some(mut e) = feeder.stderr.take() {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut e, &mut std::io::sink());
                    });
                }
                break (feeder, out);
            }
            let _ = feeder.wait();
            let mut err = String::new();
            if let Some(mut e) = feeder.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            failures.push(format!("{:?} {}", line.trim(), err.trim()));
            assert!(
                failures.len() < 3,
                "the feeder did not start on jackd {}: {failures:?}",
                self.server
            );
        };
        // NOTE: what an earlier server's feeder reported stays counted.
        {
            let mut d = self.drops.lock().unwrap_or_else(|p| p.into_inner());
            d.0.xruns += d.1.xruns;
            d.0.skipped += d.1.skipped;
            d.1 = DeviceDrops::default();
        }
        // NOTE: a new feeder counts its signal from 0 again.
        self.time_skips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.signal_frame
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let drops = self.drops.clone();
        let time_skips = self.time_skips.clone();
        let signal_frame = self.signal_frame.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let field = |k: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                if line.starts_with("timeskip ") {
                    time_skips
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((field("at="), field("frames=")));
                    continue;
                }
                if line.starts_with("frame ") {
                    signal_frame.store(field("n="), std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                let now = DeviceDrops {
                    xruns: field("xruns="),
                    skipped: field("skipped="),
                };
                drops.lock().unwrap_or_else(|p| p.into_inner()).1 = now;
            }
        });
        self.feeder = Some(feeder);
    }

    /// Starts jackd and waits until it answers (`Ok`) or exits (`Err`,
    /// with its log).
    fn spawn_jackd(&mut self, log: &Path) -> Result<(), String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut jackd = Command::new("jackd")
            .args([
                "-n",
                &self.server,
                "-d",
                "dummy",
                "-C",
                "32",
                "-P",
                "32",
                "-r",
                "48000",
                "-p",
            ])
            .arg(PERIOD.to_string())
            .env("JACK_NO_AUDIO_RESERVATION", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting jackd (apt-get install jackd2)");
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let up = Command::new("jack_wait")
                .args(["-s", &self.server, "-w", "-t", "1"])
                .env("JACK_NO_START_SERVER", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                self.jackd = Some(jackd);
                return Ok(());
            }
            if let Ok(Some(status)) = jackd.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("jackd exited ({status}): {}", text.trim()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop(&mut jackd, nix::sys::signal::Signal::SIGKILL);
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!("no answer in 120 s: {}", text.trim()))
    }

    /// What the device dropped so far (the JACK server's xruns and the
    /// feeder's missed cycles): audio lost before the agent could read it.
    pub fn drops(&self) -> DeviceDrops {
        let d = self.drops.lock().unwrap_or_else(|p| p.into_inner());
        DeviceDrops {
            xruns: d.0.xruns + d.1.xruns,
            skipped: d.0.skipped + d.1.skipped,
        }
    }

    /// Stretches of time the device's clock skipped with no cycle run
    /// (see [`crate::timeline`]), as (signal frame after it, frames), for
    /// the running feeder's signal. On a console they would be audio lost,
    /// though the feeder's counter shows no jump.
    pub fn time_skips(&self) -> Vec<(u64, u64)> {
        self.time_skips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The signal frame the feeder was writing at most 100 ms ago (0
    /// until it first says).
    pub fn signal_frame(&self) -> u64 {
        self.signal_frame.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the feeder and the server: the device disappears.
    pub fn stop_server(&mut self) {
        if let Some(mut f) = self.feeder.take() {
            drop(f.stdin.take());
            stop(&mut f, nix::sys::signal::Signal::SIGTERM);
        }
        if let Some(mut j) = self.jackd.take() {
            stop(&mut j, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Kills the server and the feeder at once (SIGKILL), like a USB
    /// interface pulled out: the device's streams die.
    pub fn crash_server(&mut self) {
        for mut c in [self.jackd.take(), self.feeder.take()]
            .into_iter()
            .flatten()
        {
            stop(&mut c, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Starts the server and the feeder again: the device is back.
    pub fn restart_server(&mut self) {
        self.stop_server();
        self.start_server();
    }

    /// Environment for a process that captures from `x32jack`.
    pub fn env(&self, dir: &Path) -> Vec<(String, String)> {
        vec![
            ("ALSA_CONFIG_PATH".into(), x32jack_config(dir)),
            ("JACK_DEFAULT_SERVER".into(), self.server.clone()),
            ("JACK_NO_START_SERVER".into(), "1".into()),
        ]
    }
}

impl Drop for JackDevice {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Claims a free server name from the pool: blocks (bounded: 10 minutes)
/// until one of [`SLOTS`] lock files can be locked.
fn claim_slot() -> (String, std::fs::File) {
    let dir = std::env::temp_dir().join("rakkr-jack-slots");
    std::fs::create_dir_all(&dir).expect("creating the JACK slot directory");
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        for k in 0..SLOTS {
            let path = dir.join(format!("{k}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            if file.try_lock().is_ok() {
                return (format!("rakkr-test-{k}"), file);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no JACK server slot came free in 10 minutes");
}

/// Removes semaphores a killed server `server` left in /dev/shm: a new
/// server of that name would open them with their old counts. Only called
/// while holding the name's slot.
fn remove_stale_semaphores(server: &str) {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    let tag = format!("_{server}_");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("jack_sem.") && name.contains(&tag) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// When the registry is full of slots from servers that no longer exist
/// (other names, older runs) and no jackd runs at all, removes it; the next
/// server creates a fresh one.
fn clear_registry_if_no_jackd() {
    let running = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "jackd"));
    if !running {
        eprintln!("JACK registry full of dead servers and no jackd runs: clearing it");
        let _ = std::fs::remove_file("/dev/shm/jack-shm-registry");
    }
}
