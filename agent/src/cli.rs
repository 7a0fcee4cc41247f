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
    Check,
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
}
