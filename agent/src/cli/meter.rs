//! `meter`: live per-channel level bars in the terminal, for an engineer
//! standing at the node. Reads the running daemon's meters (from the same
//! stream it captures — no second capture); `--once` / `--json` (the
//! controller's meter frame shape, see `inventory/meter.rs`) are for
//! scripts.

use std::io::Write;

use anyhow::Context;
use rakkr_protocol::MeterFrame;

use crate::config::Config;
use crate::control;
use crate::exit::Failure;

/// Bar scale: -60 dBFS (empty) to 0 dBFS (full).
const FLOOR_DB: f32 = -60.0;
const WIDTH: usize = 40;

fn bar(peak: f32, rms: f32) -> String {
    let cells =
        |db: f32| (((db - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0) * WIDTH as f32).round() as usize;
    let (r, p) = (cells(rms), cells(peak));
    (0..WIDTH)
        .map(|i| {
            if i < r {
                '#'
            } else if i < p {
                '='
            } else {
                '.'
            }
        })
        .collect()
}

/// The frame as text: one line per channel.
pub fn render(frame: &MeterFrame, config: &Config) -> String {
    let mut out = String::new();
    for l in &frame.levels {
        let name = config.capture.channel_name(l.channel_index);
        out.push_str(&format!(
            "{:>2} {:<12.12} [{}] {:>6.1} pk {:>6.1} rms{}\n",
            l.channel_index,
            name,
            bar(l.peak_dbfs, l.rms_dbfs),
            l.peak_dbfs,
            l.rms_dbfs,
            if l.clipping { "  CLIP" } else { "" }
        ));
    }
    out
}

pub fn run(config: &Config, once: bool, json: bool) -> anyhow::Result<()> {
    let node_id = json.then(|| crate::inventory::node_id(config));
    let replies =
        control::stream(&config.state_dir, &control::Request::Meter).context(Failure::NoDaemon)?;
    let mut stdout = std::io::stdout().lock();
    for reply in replies {
        let frame = match reply? {
            control::Reply::Meter(f) => f,
            control::Reply::Error { message } => anyhow::bail!("the agent refused: {message}"),
            other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
        };
        if let Some(node_id) = &node_id {
            // The controller's meter frame shape, labels from the aliases.
            let shaped = crate::inventory::meter::controller_frame(&frame, node_id, |n| {
                config.capture.channel_name(n)
            });
            writeln!(stdout, "{}", serde_json::to_string(&shaped)?)?;
        } else {
            if !once {
                // Home the cursor and clear: a steady picture, not a scroll.
                write!(stdout, "\x1b[H\x1b[2J")?;
            }
            write!(stdout, "{}", render(&frame, config))?;
        }
        stdout.flush()?;
        if once {
            return Ok(());
        }
    }
    anyhow::bail!("the agent closed the meter stream")
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_show_rms_solid_and_peak_hollow() {
        let b = super::bar(-6.0, -30.0);
        assert_eq!(b.len(), 40);
        assert_eq!(b.matches('#').count(), 20);
        assert_eq!(b.matches('=').count(), 16);
        assert_eq!(super::bar(-120.0, -160.0), ".".repeat(40));
    }
}
