//! The real-time test device (tier 2 of shared/notes/alsa-test-device.md):
//! JACK's dummy backend running at 48 kHz, our feeder client
//! (`rakkr-jack-feeder`) putting the known x32 signal on 32 ports, and the
//! ALSA `jack` PCM (`x32jack`) that turns them into a capture device —
//! paced by a clock, able to xrun when a reader stalls, and to vanish when
//! the server stops.
//!
//! Each device runs its own JACK server under a unique name, passed to the
//! feeder and the agent through `JACK_DEFAULT_SERVER`, so tests can run in
//! parallel without touching this process's environment.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Period of the dummy backend, in frames.
pub const PERIOD: u32 = 256;

#[derive(Debug)]
pub struct JackDevice {
    pub server: String,
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
    /// Starts a JACK server named `server` and the feeder (`feeder_bin`).
    pub fn start(server: &str, feeder_bin: &Path) -> Self {
        let mut d = Self {
            server: server.to_owned(),
            feeder_bin: feeder_bin.to_owned(),
            jackd: None,
            feeder: None,
        };
        d.start_server();
        d
    }

    fn start_server(&mut self) {
        let jackd = Command::new("jackd")
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting jackd (apt-get install jackd2)");
        self.jackd = Some(jackd);
        let up = Command::new("jack_wait")
            .args(["-s", &self.server, "-w", "-t", "10"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(up, "jackd {} did not come up", self.server);
        let mut feeder = Command::new(&self.feeder_bin)
            .env("JACK_DEFAULT_SERVER", &self.server)
            .env("JACK_NO_START_SERVER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting rakkr-jack-feeder");
        let mut line = String::new();
        std::io::BufReader::new(feeder.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("feeder output");
        assert_eq!(line.trim(), "feeding", "the feeder did not start");
        self.feeder = Some(feeder);
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
