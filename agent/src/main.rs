//! rakkr-recorder-agent: parses the command line, sets up logging,
//! dispatches, and maps errors to exit codes (see `exit.rs`).

mod aligned;
mod backoff;
mod build_info;
mod capture;
mod cli;
mod commands;
mod config;
mod control;
mod daemon;
mod exit;
mod fit;
mod inventory;
mod link;
mod node;
mod notify;
mod ops;
mod outbox;
mod record;
mod recorder;
mod state;
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
                exit::code_of(&e)
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
        return ops::print_inventory(&config, true).map(|()| 0);
    }
    let done = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            return daemon::run(config).map(|e| match e {
                daemon::Exit::Stopped => 0,
                daemon::Exit::Restart => exit::RESTART,
            });
        }
        Command::Update { action } => match action {
            UpdateAction::Apply {
                artifact,
                release_manifest,
                signature,
                sha256,
                sha256_file,
                install_path,
                expect_version,
                allow_downgrade,
                force,
                no_restart,
            } => ops::update::apply(
                &config,
                ops::update::ApplyArgs {
                    artifact,
                    release_manifest,
                    signature,
                    sha256,
                    sha256_file,
                    install_path,
                    version: expect_version,
                    allow_downgrade,
                    force,
                    no_restart,
                },
            ),
            UpdateAction::Status { install_path, json } => {
                ops::update::status(&config, install_path.as_deref(), json)
            }
            UpdateAction::Rollback {
                install_path,
                force,
                no_restart,
            } => ops::update::rollback(&config, install_path.as_deref(), force, no_restart),
        },
        Command::Trust { action } => match action {
            TrustAction::Show { json } => return ops::trust::show(&config, json),
            TrustAction::Rotate => ops::trust::rotate(&config),
            TrustAction::Enroll {
                controller,
                ca,
                node_id,
                token_file,
            } => ops::enroll::run(
                &config,
                ops::enroll::Args {
                    controller,
                    ca,
                    node_id,
                    token_file,
                },
            ),
            TrustAction::Install {
                ca,
                cert,
                key,
                no_reload,
            } => ops::trust::install(
                &config,
                ops::trust::InstallArgs {
                    ca,
                    cert,
                    key,
                    no_reload,
                },
            ),
        },
        Command::Inventory { json } => ops::print_inventory(&config, json),
        Command::Check {
            configured: true, ..
        } => return Ok(ops::configured(&config)),
        Command::Check { config_only, .. } => ops::check(&config, config_only),
        Command::Status { json } => ops::status(&config, json),
        Command::Annotate { text } => ops::annotate(&config, text),
        Command::Record {
            duration,
            output,
            device,
            channels,
            format,
            segment,
            take_id,
        } => {
            let args = ops::record::Args {
                duration,
                output,
                device,
                channels,
                format,
                segment,
                take_id,
            };
            ops::record::run(&config, args)
        }
        Command::Meter { once, json } => ops::meter::run(&config, once, json),
        Command::Recover { dir } => ops::record::recover(&config, dir),
        Command::Takes {
            action: TakesAction::Verify { take, json },
        } => ops::takes::verify(&config, take, json),
        Command::Encode {
            input,
            channels,
            rate,
            format,
            output,
            take_id,
            segment,
            threads,
            keep_whole_frames,
        } => ops::encode::run(
            &config,
            ops::encode::Args {
                input,
                channels,
                rate,
                container: ops::record::container_of(format),
                output,
                take_id,
                segment: segment.unwrap_or(config.capture.segment),
                threads,
                keep_whole_frames,
            },
        ),
    };
    done.map(|()| 0)
}
