//! rakkr-jack-feeder: a JACK client with 32 outputs (`rakkr-feeder:out_N`)
//! feeding the known x32 test signal, until stdin closes. The JACK server
//! is the one named by `JACK_DEFAULT_SERVER`.
//!
//! Prints `feeding` once running, then a line `dropped xruns=X skipped=Y`
//! whenever the device dropped audio: X xruns the JACK server reported
//! (a cycle some client, the agent's included, missed: the server itself
//! lost that audio) and Y frames of cycles this feeder was not run for.
//! Tests read it to tell the device's losses from the agent's.
//!
//! Also prints `timeskip at=N frames=K` for each stretch of time the
//! device's clock skipped without a cycle (see `rakkr_e2e::timeline`): N
//! is the signal frame the feeder wrote first after it, K its length. At
//! most [`SKIPS_MAX`] are told. And, every 100 ms, `frame n=N`: the
//! signal frame it is writing (the signal's counter wraps every 2^18
//! frames; this tells a test which turn a recording began in).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use rakkr_e2e::alsa::x32_sample;
use rakkr_e2e::timeline::Timeline;

/// Time skips kept for printing; later ones are counted, not told.
const SKIPS_MAX: usize = 1024;

/// Time skips found by the process callback, read by the printer: each
/// slot is written once, before `count` is raised past it.
struct Skips {
    at: [AtomicU64; SKIPS_MAX],
    frames: [AtomicU64; SKIPS_MAX],
    count: AtomicUsize,
}

impl Skips {
    fn new() -> Self {
        Self {
            at: std::array::from_fn(|_| AtomicU64::new(0)),
            frames: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicUsize::new(0),
        }
    }

    /// Realtime-safe: two stores and a counter.
    fn push(&self, at: u64, frames: u64) {
        let i = self.count.load(Ordering::Relaxed);
        if i < SKIPS_MAX {
            self.at[i].store(at, Ordering::Relaxed);
            self.frames[i].store(frames, Ordering::Relaxed);
        }
        self.count.store(i + 1, Ordering::Release);
    }
}

struct Feeder {
    ports: Vec<jack::Port<jack::AudioOut>>,
    /// The signal's frame counter.
    n: u64,
    /// The frame time the next cycle should start at.
    next_cycle: Option<u32>,
    skipped: Arc<AtomicU64>,
    timeline: Timeline,
    epoch: Instant,
    skips: Arc<Skips>,
    /// `n`, for the printer.
    frame: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Feeder {
    /// Realtime-safe: reads the clock, fills the ports and bumps atomics.
    fn process(&mut self, client: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let now = self.epoch.elapsed().as_secs_f64();
        let rate = client.sample_rate();
        if let Some((at, frames)) = self.timeline.cycle(self.n, now, rate, ps.n_frames()) {
            self.skips.push(at, frames);
        }
        let start = ps.last_frame_time();
        // NOTE: frame time may also step back (jack2 resets it in some
        // xruns); that is no skipped cycle, and read as a u32 difference it
        // would count four billion frames.
        if let Some(want) = self.next_cycle
            && let ahead = start.wrapping_sub(want)
            && ahead != 0
            && ahead < 1 << 31
        {
            self.skipped.fetch_add(u64::from(ahead), Ordering::Relaxed);
        }
        self.next_cycle = Some(start.wrapping_add(ps.n_frames()));
        for (c, port) in self.ports.iter_mut().enumerate() {
            for (i, s) in port.as_mut_slice(ps).iter_mut().enumerate() {
                // Exactly representable in f32: a 24-bit value over 2^23.
                *s = (f64::from(x32_sample(c, self.n + i as u64)) / 2_147_483_648.0) as f32;
            }
        }
        self.n += u64::from(ps.n_frames());
        self.frame.store(self.n, Ordering::Relaxed);
        jack::Control::Continue
    }
}

struct Notes {
    xruns: Arc<AtomicU64>,
}

impl jack::NotificationHandler for Notes {
    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        self.xruns.fetch_add(1, Ordering::Relaxed);
        jack::Control::Continue
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _) = jack::Client::new(
        "rakkr-feeder",
        jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME,
    )?;
    let ports = (1..=32)
        .map(|i| client.register_port(&format!("out_{i}"), jack::AudioOut::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let (xruns, skipped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let skips = Arc::new(Skips::new());
    let frame = Arc::new(AtomicU64::new(0));
    let active = client.activate_async(
        Notes {
            xruns: xruns.clone(),
        },
        Feeder {
            ports,
            n: 0,
            next_cycle: None,
            skipped: skipped.clone(),
            timeline: Timeline::default(),
            epoch: Instant::now(),
            skips: skips.clone(),
            frame: frame.clone(),
        },
    )?;
    println!("feeding");
    std::io::stdout().flush()?;
    // Until the parent closes stdin (or dies); meanwhile report drops.
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        c.store(true, Ordering::Relaxed);
    });
    let mut said = (0, 0);
    let mut told = 0;
    for tick in 0u64.. {
        if closed.load(Ordering::Relaxed) {
            break;
        }
        if tick % 5 == 0 {
            println!("frame n={}", frame.load(Ordering::Relaxed));
            let _ = std::io::stdout().flush();
        }
        let found = skips.count.load(Ordering::Acquire).min(SKIPS_MAX);
        for i in told..found {
            println!(
                "timeskip at={} frames={}",
                skips.at[i].load(Ordering::Relaxed),
                skips.frames[i].load(Ordering::Relaxed)
            );
        }
        if found > told {
            let _ = std::io::stdout().flush();
        }
        told = found;
        let now = (
            xruns.load(Ordering::Relaxed),
            skipped.load(Ordering::Relaxed),
        );
        if now != said {
            said = now;
            println!("dropped xruns={} skipped={}", now.0, now.1);
            let _ = std::io::stdout().flush();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = active.deactivate();
    Ok(())
}
