//! rakkr-jack-feeder: a JACK client with 32 outputs (`rakkr-feeder:out_N`)
//! feeding the known x32 test signal, until stdin closes. The JACK server
//! is the one named by `JACK_DEFAULT_SERVER`.
//!
//! Prints `feeding` once running, then a line `dropped xruns=X skipped=Y`
//! whenever the device dropped audio: X xruns the JACK server reported
//! (a cycle some client, the agent's included, missed: the server itself
//! lost that audio) and Y frames of cycles this feeder was not run for.
//! Tests read it to tell the device's losses from the agent's.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rakkr_e2e::alsa::x32_sample;

struct Feeder {
    ports: Vec<jack::Port<jack::AudioOut>>,
    /// The signal's frame counter.
    n: u64,
    /// The frame time the next cycle should start at.
    next_cycle: Option<u32>,
    skipped: Arc<AtomicU64>,
}

impl jack::ProcessHandler for Feeder {
    /// Realtime-safe: fills the ports and bumps an atomic.
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let start = ps.last_frame_time();
        if let Some(want) = self.next_cycle
            && start != want
        {
            self.skipped
                .fetch_add(u64::from(start.wrapping_sub(want)), Ordering::Relaxed);
        }
        self.next_cycle = Some(start.wrapping_add(ps.n_frames()));
        for (c, port) in self.ports.iter_mut().enumerate() {
            for (i, s) in port.as_mut_slice(ps).iter_mut().enumerate() {
                // Exactly representable in f32: a 24-bit value over 2^23.
                *s = (f64::from(x32_sample(c, self.n + i as u64)) / 2_147_483_648.0) as f32;
            }
        }
        self.n += u64::from(ps.n_frames());
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
    let active = client.activate_async(
        Notes {
            xruns: xruns.clone(),
        },
        Feeder {
            ports,
            n: 0,
            next_cycle: None,
            skipped: skipped.clone(),
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
    while !closed.load(Ordering::Relaxed) {
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
