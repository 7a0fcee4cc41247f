//! rakkr-recorder-agent: parses the command line, sets up logging,
//! dispatches, and maps errors to exit codes (see `exit.rs`).

mod aligned;
mod backoff;
mod build_info;
mod capture;
mod cli;
mod command_log;
mod config;
mod console;
mod control;
mod daemon;
mod dispatch;
mod engine;
mod exit;
mod fit;
mod health;
mod inventory;
mod jobs;
#[cfg(test)]
mod layout_tests;
mod link;
mod node;
mod notify;
mod outbox;
mod release_key;
mod state_dir;
mod take;
mod trust;
mod update;
mod util;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, TakesAction, TrustAction, UpdateAction};
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
    // NOTE: first, while the process has one thread (it may set the
    // environment): alsa-lib's configuration on a node that has none.
    if let Err(e) = capture::alsa_conf::ensure() {
        eprintln!("warning: could not provide the embedded ALSA configuration: {e}");
    }
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
    // NOTE: under ExecCondition=, codes 1-254 mean "skip the unit": a
    // broken configuration must fail it instead (255).
    let condition = matches!(
        cli.command,
        Some(Command::Check {
            configured: true,
            ..
        })
    );
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if condition {
                ExitCode::from(255)
            } else {
                exit::code_of(&e, typed_exit_code)
            }
        }
    }
}

/// Runs the command; returns the exit code of a success.
fn dispatch(cli: Cli) -> anyhow::Result<u8> {
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
            Some(
                Command::Inventory { .. }
                    | Command::Status { .. }
                    | Command::Meter { .. }
                    | Command::Console { .. }
                    | Command::Update { .. }
                    | Command::Trust { .. }
            )
        );
    let filter = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("RAKKR_LOG").ok())
        .or_else(|| config.log_level.clone())
        .unwrap_or_else(|| if quiet { "warn".into() } else { "info".into() });
    init_logging(&filter);

    if cli.print_inventory {
        return cli::print_inventory(&config, true).map(|()| 0);
    }
    let done = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            return daemon::run(config).map(|e| match e {
                daemon::Exit::Stopped => 0,
                daemon::Exit::Restart => exit::RESTART,
            });
        }
        Command::Update { action } => match action {
            UpdateAction::Apply(a) => cli::update::apply(&config, a),
            UpdateAction::Status { install_path, json } => {
                cli::update::status(&config, install_path.as_deref(), json)
            }
            UpdateAction::Rollback {
                install_path,
                force,
                no_restart,
            } => cli::update::rollback(&config, install_path.as_deref(), force, no_restart),
        },
        Command::Trust { action } => match action {
            TrustAction::Show { json } => return cli::trust::show(&config, json),
            TrustAction::Rotate => cli::trust::rotate(&config),
            TrustAction::Enroll(a) => cli::enroll::run(&config, a),
            TrustAction::Install(a) => cli::trust::install(&config, a),
        },
        Command::Inventory { json } => cli::print_inventory(&config, json),
        Command::Check {
            configured: true, ..
        } => return Ok(cli::configured(&config)),
        Command::Check { config_only, .. } => cli::check(&config, config_only),
        Command::Status { json } => cli::status(&config, json),
        Command::Annotate { text } => cli::annotate(&config, text),
        Command::Record(a) => cli::record::run(&config, a),
        Command::Meter { once, json } => cli::meter::run(&config, once, json),
        Command::Console { json } => cli::console::run(&config, json),
        Command::Recover { dir } => cli::record::recover(&config, dir),
        Command::Takes {
            action: Some(TakesAction::Verify { take, json }),
            ..
        } => cli::takes::verify(&config, take, json),
        Command::Takes {
            action: Some(TakesAction::Prune { dry_run }),
            ..
        } => cli::takes::prune(&config, dry_run),
        Command::Takes { action: None, json } => cli::takes::list(&config, json),
        Command::Encode(a) => cli::encode::run(&config, a),
    };
    done.map(|()| 0)
}

/// Exit codes the typed errors of `update` and `trust` carry (README table).
fn typed_exit_code(err: &anyhow::Error) -> Option<u8> {
    err.downcast_ref::<update::UpdateError>()
        .map(|u| u.exit_code())
        .or_else(|| {
            err.downcast_ref::<trust::validate::Refusal>()
                .map(|r| r.exit_code())
        })
}
