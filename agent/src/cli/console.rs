//! `console [--json]`: what the agent sees of the console now: the
//! running agent's view (its console task), else the console asked
//! directly (within a second). Exit 3 when no console is configured, 28
//! when one is configured and nothing answered.

use std::time::Duration;

use crate::config::Config;
use crate::console::{ConsoleView, probe};
use crate::control;
use crate::exit::Failure;

/// How long a direct ask waits for the console (no agent running).
const ASK_BUDGET: Duration = Duration::from_secs(1);

pub fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    if !config.console.enabled() {
        return Err(anyhow::anyhow!(
            "no console configured: set console.address (RAKKR_CONSOLE_ADDRESS, HOST or HOST:PORT) or console.discovery = true"
        )
        .context(Failure::Config));
    }
    let (view, from) = match control::request(&config.state_dir, &control::Request::Status) {
        Ok(control::Reply::Status(s)) if s.console.is_some() => {
            (s.console.unwrap_or_default(), "the running agent")
        }
        _ => (
            probe::ask(&config.console, ASK_BUDGET),
            "asked directly (no agent running)",
        ),
    };
    if json {
        let mut v = serde_json::to_value(&view)?;
        v["seenBy"] = from.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&view, from));
    }
    if view.model.is_none() {
        return Err(anyhow::anyhow!(
            "the console did not answer: {}",
            view.problem.as_deref().unwrap_or("no answer")
        )
        .context(Failure::ConsoleSilent));
    }
    Ok(())
}

fn table(v: &ConsoleView, from: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Console   {} ({from})", v.summary());
    for (k, val) in [
        ("Serial", &v.serial),
        ("MAC", &v.mac),
        ("Last seen", &v.last_seen),
        ("Problem", &v.problem),
    ] {
        if let Some(val) = val {
            let _ = writeln!(s, "{k:<9} {val}");
        }
    }
    if v.dropped > 0 {
        let _ = writeln!(s, "Dropped   {} datagrams not from the console", v.dropped);
    }
    for c in &v.candidates {
        let _ = writeln!(s, "Heard     {c}");
    }
    if !v.channels.is_empty() {
        let _ = writeln!(s, "\n  CARD  CONSOLE  ROUTING   NAME");
        for c in &v.channels {
            let _ = writeln!(
                s,
                "  {:<5} {:<8} {:<9} {}",
                c.channel,
                c.console_channel.map_or("-".into(), |n| n.to_string()),
                c.routing,
                c.name.as_deref().unwrap_or("")
            );
        }
    }
    s
}
