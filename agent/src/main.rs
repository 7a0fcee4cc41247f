//! rakkr-recorder-agent: parses the command line, sets up logging,
//! dispatches, and maps errors to exit codes (see `exit.rs`).

mod backoff;
mod build_info;
mod cli;
mod commands;
mod config;
mod control;
mod daemon;
mod exit;
mod inventory;
mod link;
mod node;
mod outbox;
mod state;
mod trust;
mod util;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // The journal stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.version {
        print!("{}", build_info::version_text());
        return ExitCode::SUCCESS;
    }
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code_of(&e)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let source = config::Source {
        path: cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH)),
        explicit: cli.config.is_some(),
    };
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR));
    let config = config::load(&source, &state_dir).context(Failure::Config)?;
    let quiet = cli.print_inventory
        || matches!(
            cli.command,
            Some(Command::Inventory { .. } | Command::Status { .. })
        );
    let filter = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("RAKKR_LOG").ok())
        .or_else(|| config.log_level.clone())
        .unwrap_or_else(|| if quiet { "warn".into() } else { "info".into() });
    init_logging(&filter);

    if cli.print_inventory {
        return print_inventory_json(&config);
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => daemon::run(config),
        Command::Inventory { json: true } => print_inventory_json(&config),
        Command::Inventory { json: false } => {
            print!(
                "{}",
                inventory::render_table(&inventory::build(&config, false))
            );
            Ok(())
        }
        Command::Check => check(&config),
        Command::Status { json } => status(&config, json),
        Command::Annotate { text } => {
            match control::request(&config.state_dir, &control::Request::Annotate { text })
                .context(Failure::NoDaemon)?
            {
                control::Reply::Annotated { seq } => {
                    println!("recorded as event {seq}");
                    Ok(())
                }
                control::Reply::Error { message } => {
                    anyhow::bail!("the agent refused the note: {message}")
                }
                other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
            }
        }
    }
}

fn print_inventory_json(config: &config::Config) -> anyhow::Result<()> {
    let inv = inventory::build(config, false);
    println!("{}", serde_json::to_string_pretty(&inv)?);
    Ok(())
}

fn check(config: &config::Config) -> anyhow::Result<()> {
    let ep = config
        .controller
        .endpoint
        .as_ref()
        .context("no controller configured: set controller.url or RAKKR_CONTROLLER_URL")
        .context(Failure::Config)?;
    let loaded = trust::require(&config.trust).context(Failure::Trust)?;
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
        "ok: config {}, controller {} (server name {}), node {} (certificate valid until {})",
        config
            .source
            .as_ref()
            .map_or("(defaults and RAKKR_* variables)".into(), |p| p
                .display()
                .to_string()),
        ep.address(),
        ep.server_name,
        loaded.node_id,
        util::iso8601(loaded.not_after_unix)
    );
    Ok(())
}

fn status(config: &config::Config, json: bool) -> anyhow::Result<()> {
    match control::request(&config.state_dir, &control::Request::Status)
        .context(Failure::NoDaemon)?
    {
        control::Reply::Status(s) if json => println!("{}", serde_json::to_string_pretty(&s)?),
        control::Reply::Status(s) => {
            println!("agent {} (pid {})", s.version, s.pid);
            println!("link: {}", serde_json::to_string(&s.link)?);
            println!("events waiting for the controller: {}", s.pending_events);
        }
        other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
    }
    Ok(())
}
