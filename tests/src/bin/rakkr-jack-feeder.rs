//! rakkr-jack-feeder: a JACK client with 32 outputs (`rakkr-feeder:out_N`)
//! feeding the known x32 test signal, until stdin closes. The JACK server
//! is the one named by `JACK_DEFAULT_SERVER`.

use std::io::Read;

use rakkr_e2e::alsa::x32_sample;

struct Feeder {
    ports: Vec<jack::Port<jack::AudioOut>>,
    /// The signal's frame counter.
    n: u64,
}

impl jack::ProcessHandler for Feeder {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _) = jack::Client::new(
        "rakkr-feeder",
        jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME,
    )?;
    let ports = (1..=32)
        .map(|i| client.register_port(&format!("out_{i}"), jack::AudioOut::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let active = client.activate_async((), Feeder { ports, n: 0 })?;
    println!("feeding");
    // Until the parent closes stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let _ = active.deactivate();
    Ok(())
}
