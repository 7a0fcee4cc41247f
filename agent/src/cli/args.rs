//! Command-line interface (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rakkr-recorder-agent",
    about = "Rakkr recorder node agent: captures multichannel audio and serves the Rakkr controller over mutual TLS",
    disable_version_flag = true
)]
pub struct Cli {
    /// Config file (TOML). Every key can also be set with a RAKKR_* variable.
    #[arg(long, global = true, env = "RAKKR_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// State directory (trust, outbox, control socket).
    #[arg(long, global = true, env = "RAKKR_STATE_DIR", value_name = "PATH")]
    pub state_dir: Option<PathBuf>,

    /// Log filter (e.g. info, debug, rakkr_recorder_agent=trace). Default: RAKKR_LOG, then log.level, then info.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Print the node inventory as JSON and exit (the controller's smoke check).
    #[arg(long)]
    pub print_inventory: bool,

    /// Print version, revision, target, build date and library versions.
    #[arg(short = 'V', long)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default without a subcommand).
    Run,
    /// Show the node inventory (table, or JSON with --json). Writes nothing.
    Inventory {
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and trust material; exit non-zero if the agent could not run.
    Check {
        /// Only the configuration (systemd's ExecStartPre: trust may be
        /// installed while the daemon runs; it reads trust per connection).
        #[arg(long)]
        config_only: bool,
        /// Only whether a controller is configured: exit 0 if so, 1 if not
        /// (systemd's ExecCondition: a node not configured yet is skipped,
        /// not failed and restarted); 255 for a broken configuration.
        #[arg(long, conflicts_with = "config_only")]
        configured: bool,
    },
    /// Show the running agent's state (link, pending events).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Record an operator note as an event (sent to the controller).
    Annotate {
        /// The note.
        text: String,
    },
    /// Record a take without any controller; prints where the take and its manifest are.
    Record(crate::cli::record::Args),
    /// The console the node is wired to: identity, address, the USB card's channels by console name.
    Console {
        #[arg(long)]
        json: bool,
    },
    /// Live per-channel level bars from the running agent (peak and RMS dBFS, clipping).
    Meter {
        /// Print one frame and exit.
        #[arg(long)]
        once: bool,
        /// JSON lines instead of bars.
        #[arg(long)]
        json: bool,
    },
    /// Encode a raw capture (interleaved S32_LE, e.g. an `arecord -t raw` dump) into a take.
    Encode(crate::cli::encode::Args),
    /// Install a release (verified first), show what is installed, or roll back.
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// The node's TLS trust: show it, or install a checked identity.
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Repair takes a crash or power cut interrupted (the daemon and `record` also do this at start), then verify them.
    Recover {
        /// A take directory, or a directory of takes; default: storage.recordings_path.
        dir: Option<PathBuf>,
    },
    /// Takes on this node.
    /// The takes on this node: status, size, files the controller has received (with no action).
    Takes {
        #[command(subcommand)]
        action: Option<TakesAction>,
        /// One JSON object per take.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TakesAction {
    /// Check every file of a take against its manifest's SHA-256 and its format's own checks; changes nothing (exit 9: damaged).
    Verify {
        /// A take directory, or a take id under storage.recordings_path; default: every take there.
        take: Option<PathBuf>,
        /// One JSON report per take.
        #[arg(long)]
        json: bool,
    },
    /// Delete what the retention policy (retention.*) deletes now, and say why; only takes whose every file the controller has received.
    Prune {
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustAction {
    /// What trust this node has (also on an empty state directory: what is missing).
    /// Exit 0 when usable, 4 when not.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Check an identity (key matches, chains to the CA, valid now, this
    /// node), install it atomically and tell the running agent. A refusal
    /// writes nothing.
    Install(crate::cli::trust::InstallArgs),
    /// A node's first identity: make a key, send a CSR with a one-time
    /// token to the controller (authenticated by --ca), check and install
    /// what comes back. The token comes from --token-file, RAKKR_ENROLL_TOKEN
    /// or the systemd credential rakkr-enroll-token; never the config.
    Enroll(crate::cli::enroll::Args),
    /// Ask the running agent to renew its certificate now (new key, CSR
    /// over the link); the outcome is a TrustRenewed or TrustRenewFailed
    /// event. Exit 7 when no agent runs here.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum UpdateAction {
    /// Verify a signed release's artifact (release .tar.gz or bare binary)
    /// and install it over the installed binary, keeping the previous one.
    /// The release manifest's signature is checked with this binary's
    /// release keys before the artifact is unpacked or run (exit 17 when
    /// it is missing or does not verify).
    Apply(crate::cli::update::ApplyArgs),
    /// Installed, previous and running versions and the last update's outcome.
    Status {
        #[arg(long, value_name = "PATH")]
        install_path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Put the previous binary back.
    Rollback {
        #[arg(long, value_name = "PATH")]
        install_path: Option<PathBuf>,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        no_restart: bool,
    },
}

/// Recording file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// One mono 24-bit FLAC file per channel.
    Flac,
    /// One mono 24-bit Broadcast WAV file per channel.
    Wav,
    /// One interleaved 24-bit Wave64 file with every channel.
    W64,
}

/// Parses `30s`, `2m`, `1h`, `1500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(secs > 0.0 && secs < 7.0 * 86_400.0) {
        return Err(format!("{s:?} must be more than 0 and less than a week"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}
