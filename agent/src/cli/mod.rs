//! The command line: its definition (`args`, clap) and every one-shot
//! subcommand (everything but `run`, which is `daemon`): one module per
//! subcommand family, and inventory, check, status, annotate here.

use anyhow::Context;

use crate::config::Config;
use crate::exit::Failure;
use crate::{control, inventory, util};

pub mod args;
pub mod console;
pub mod encode;
pub mod enroll;
pub mod meter;
pub mod record;
mod settings;
pub mod takes;
pub mod trust;
pub mod update;

pub use args::{Cli, Command, FileFormat, TakesAction, TrustAction, UpdateAction};

/// How long `--print-inventory` waits for the console's answers.
pub const PROBE_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// `--print-inventory` / `inventory [--json]`: never writes anything.
pub fn print_inventory(config: &Config, json: bool) -> anyhow::Result<()> {
    // A device our running daemon holds may refuse a probe (busy): it
    // still says what it captures. No daemon: nothing is held.
    let held = match control::request(&config.state_dir, &control::Request::Status) {
        Ok(control::Reply::Status(s)) => s.capture,
        _ => None,
    };
    // NOTE: asked directly (the 200 ms budget): a running daemon
    // would know, but this must work without one, and a console answers
    // in a few milliseconds.
    let console = crate::console::probe::ask(&config.console, PROBE_BUDGET);
    let inv = inventory::build(config, false, held.as_ref(), console);
    if json {
        println!("{}", serde_json::to_string_pretty(&inv)?);
    } else {
        print!("{}", inventory::render_table(&inv));
    }
    Ok(())
}

/// `check`: could `run` work with this config and trust? (`config_only`:
/// with this config, whatever the trust.)
pub fn check(config: &Config, config_only: bool) -> anyhow::Result<()> {
    let ep = config
        .controller
        .endpoint
        .as_ref()
        .context("no controller configured: set controller.url or RAKKR_CONTROLLER_URL")
        .context(Failure::Config)?;
    let source = config
        .source
        .as_ref()
        .map_or("(defaults and RAKKR_* variables)".into(), |p| {
            p.display().to_string()
        });
    for note in &config.legacy_notes {
        println!("note: {note}");
    }
    if config_only {
        println!(
            "ok: config {source}, controller {} (server name {})",
            ep.address(),
            ep.server_name
        );
        settings::print(&config.status(), true);
        return Ok(());
    }
    let loaded = crate::trust::require(&config.trust).context(Failure::Trust)?;
    if let Some(id) = &config.node.id
        && *id != loaded.node_id
    {
        return Err(anyhow::anyhow!(
            "node.id {id:?} differs from the certificate's common name {:?}; the controller would reject this node",
            loaded.node_id
        )
        .context(Failure::Config));
    }
    println!(
        "ok: config {source}, controller {} (server name {}), node {} (certificate valid until {})",
        ep.address(),
        ep.server_name,
        loaded.node_id,
        util::iso8601(loaded.not_after_unix)
    );
    settings::print(&config.status(), true);
    Ok(())
}

/// `check --configured`: 0 when a controller is configured, else 1.
pub fn configured(config: &Config) -> u8 {
    if config.controller.endpoint.is_some() {
        0
    } else {
        println!(
            "not configured yet: set controller.url in {} or RAKKR_CONTROLLER_URL in /etc/rakkr/recorder-agent.env, then start the service",
            crate::config::DEFAULT_PATH
        );
        1
    }
}

/// `status`: ask the running daemon.
pub fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    match control::request(&config.state_dir, &control::Request::Status)
        .context(Failure::NoDaemon)?
    {
        control::Reply::Status(s) if json => println!("{}", serde_json::to_string_pretty(&s)?),
        control::Reply::Status(s) => {
            println!("agent {} (pid {})", s.version, s.pid);
            println!("link: {}", serde_json::to_string(&s.link)?);
            println!("events waiting for the controller: {}", s.pending_events);
            for t in &s.takes {
                let job = if t.job_id.is_empty() {
                    String::new()
                } else {
                    format!(", job {}", t.job_id)
                };
                if t.take.dir.is_empty() {
                    println!(
                        "scheduled: take {} ({} channels{job}), starts at {}",
                        t.take.take_id,
                        t.take.channels,
                        crate::util::iso8601((t.take.started_at_ms / 1000) as i64)
                    );
                } else {
                    println!(
                        "recording: take {} ({} channels{job}, {} frames so far)",
                        t.take.take_id, t.take.channels, t.take.frames
                    );
                }
            }
            if let Some(why) = &s.retention_blocked {
                println!("retention: {why}");
            }
            if let Some(c) = s.console.as_ref().filter(|c| c.state != "off") {
                println!("console: {}", c.summary());
            }
            print_health(&s.health);
            settings::print(&s.config, false);
            if let Some(l) = &s.listen {
                println!(
                    "listen: the controller listens to channels {:?} at {} Hz ({} frames dropped on a slow link)",
                    l.channels, l.rate, l.dropped
                );
            }
        }
        other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
    }
    Ok(())
}

fn print_health(h: &crate::health::HealthStatus) {
    let raised: Vec<String> = h
        .raised()
        .map(|s| {
            let channels = if s.channels.is_empty() {
                String::new()
            } else {
                format!(" on channel(s) {:?}", s.channels)
            };
            format!(
                "{} ({}{channels}: {:.2}, threshold {:.2})",
                s.signal,
                s.severity.as_deref().unwrap_or_default(),
                s.value,
                s.threshold
            )
        })
        .collect();
    if raised.is_empty() {
        println!("health: ok ({} signals watched)", h.signals.len());
    } else {
        println!("health: {}", raised.join("; "));
    }
    for s in h.signals.iter().filter(|s| s.pending > 0) {
        println!(
            "  {}: {} observation(s) toward a change",
            s.signal, s.pending
        );
    }
    match &h.clock {
        Some(c) => println!(
            "clock: {:+.3} s from the controller's (round trip {} ms)",
            -(c.offset_ms as f64) / 1000.0,
            c.rtt_ms
        ),
        None => println!("clock: not measured yet (needs a controller speaking protocol 2)"),
    }
    if let Some(sync) = &h.clock_sync {
        match sync.synchronized {
            Some(true) => println!("clock sync: synchronised (NTP)"),
            Some(false) => {
                println!("clock sync: NOT synchronised: start chrony or systemd-timesyncd")
            }
            None => println!(
                "clock sync: unknown ({})",
                sync.error.as_deref().unwrap_or("")
            ),
        }
    }
}

/// `annotate TEXT`: hand a note to the running daemon.
pub fn annotate(config: &Config, text: String) -> anyhow::Result<()> {
    let reply = control::request(&config.state_dir, &control::Request::Annotate { text })
        .context(Failure::NoDaemon)?;
    match reply {
        control::Reply::Annotated { seq } => {
            println!("recorded as event {seq}");
            Ok(())
        }
        control::Reply::Error { message } => anyhow::bail!("the agent refused the note: {message}"),
        other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
    }
}
