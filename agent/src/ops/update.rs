//! `update apply | status | rollback`: the operator's and Ansible's way to
//! install a release on the node. Every refusal leaves the installed binary
//! untouched; exit codes come from [`UpdateError::exit_code`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::Config;
use crate::control::{self, Reply, Request};
use crate::update::artifact::{self, Expect, Policy};
use crate::update::install::{self, Paths};
use crate::update::state::{self, Phase, UpdateState};
use crate::update::{UpdateError, task};

#[derive(Debug)]
pub struct ApplyArgs {
    pub artifact: PathBuf,
    pub sha256: Option<String>,
    pub sha256_file: Option<PathBuf>,
    pub install_path: Option<PathBuf>,
    pub version: Option<String>,
    pub allow_downgrade: bool,
    pub force: bool,
    pub no_restart: bool,
}

/// The running daemon's status, if one runs on this state directory.
fn daemon(config: &Config) -> Option<control::StatusReply> {
    match control::request(&config.state_dir, &Request::Status) {
        Ok(Reply::Status(s)) => Some(s),
        _ => None,
    }
}

fn restart_daemon(config: &Config, running: bool, no_restart: bool) {
    if !running {
        println!(
            "no agent is running on {}; the new binary runs at its next start",
            config.state_dir.display()
        );
    } else if no_restart {
        println!("the running agent keeps the old binary until it restarts");
    } else {
        match control::request(&config.state_dir, &Request::Restart) {
            Ok(Reply::Restarting) => {
                println!("the running agent is restarting into it (systemd starts it again)")
            }
            other => eprintln!(
                "warning: could not ask the running agent to restart ({other:?}); restart the service"
            ),
        }
    }
}

pub fn apply(config: &Config, a: ApplyArgs) -> anyhow::Result<()> {
    let sha = match (&a.sha256, &a.sha256_file) {
        (Some(h), _) => h.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(UpdateError::io(format!("reading {}", p.display())))?,
        (None, None) => {
            return Err(anyhow::anyhow!(
                "give the artifact's hash with --sha256 HEX or --sha256-file PATH"
            ))
            .context(crate::exit::Failure::Usage);
        }
    };
    let sha = artifact::parse_sha256(&sha)
        .with_context(|| format!("{:?} is not a SHA-256 (64 hex digits)", sha.trim()))
        .context(crate::exit::Failure::Usage)?;
    let paths = Paths::resolve(a.install_path.as_deref())?;
    let running = daemon(config);
    if let Some(take_id) = running
        .as_ref()
        .and_then(|d| d.recording.clone())
        .filter(|_| !a.force)
    {
        return Err(UpdateError::Busy { take_id }.into());
    }
    let staging = staging_dir(&config.state_dir)?;
    let result = (|| -> Result<bool, UpdateError> {
        let verified = artifact::verify(
            &a.artifact,
            None,
            &staging,
            &Expect {
                sha256: sha,
                size: None,
                version: a.version.clone(),
            },
        )?;
        let installed = paths
            .installed
            .exists()
            .then(|| artifact::run_version(&paths.installed).ok())
            .flatten();
        match artifact::policy(&verified.version, installed.as_deref(), a.allow_downgrade)? {
            Policy::AlreadyInstalled => {
                println!(
                    "{} is already installed at {}; nothing to do",
                    verified.version,
                    paths.installed.display()
                );
                Ok(false)
            }
            Policy::Install => {
                task::install_with_state(
                    &verified,
                    installed.as_deref().unwrap_or_default(),
                    &paths,
                    &config.state_dir,
                )?;
                println!(
                    "installed {} at {} (previous {} kept at {}); on probation until the agent is welcomed by the controller",
                    verified.version,
                    paths.installed.display(),
                    installed.as_deref().unwrap_or("none"),
                    paths.previous.display()
                );
                Ok(true)
            }
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    if result? {
        restart_daemon(config, running.is_some(), a.no_restart);
    }
    Ok(())
}

fn staging_dir(state_dir: &Path) -> Result<PathBuf, UpdateError> {
    let d = crate::update::dir(state_dir).join(format!("staging-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(UpdateError::io(format!("creating {}", d.display())))?;
    Ok(d)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    install_path: String,
    installed_version: Option<String>,
    previous_path: String,
    previous_version: Option<String>,
    running_version: Option<String>,
    last_update: Option<UpdateState>,
}

pub fn status(config: &Config, install_path: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let paths = Paths::resolve(install_path)?;
    let version_of = |p: &Path| p.exists().then(|| artifact::run_version(p).ok()).flatten();
    let s = Status {
        install_path: paths.installed.display().to_string(),
        installed_version: version_of(&paths.installed),
        previous_path: paths.previous.display().to_string(),
        previous_version: version_of(&paths.previous),
        running_version: daemon(config).map(|d| d.version),
        last_update: state::load(&config.state_dir)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "installed: {} ({})",
        or_none(&s.installed_version),
        s.install_path
    );
    println!(
        "previous:  {} ({})",
        or_none(&s.previous_version),
        s.previous_path
    );
    println!("running:   {}", or_none(&s.running_version));
    match &s.last_update {
        None => println!("last update: none"),
        Some(u) => println!(
            "last update: {} over {} at {}: {:?}{}",
            u.version,
            u.previous_version,
            u.installed_at,
            u.phase,
            if u.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", u.reason)
            }
        ),
    }
    Ok(())
}

pub fn rollback(
    config: &Config,
    install_path: Option<&Path>,
    force: bool,
    no_restart: bool,
) -> anyhow::Result<()> {
    let paths = Paths::resolve(install_path)?;
    let running = daemon(config);
    if let Some(take_id) = running
        .as_ref()
        .and_then(|d| d.recording.clone())
        .filter(|_| !force)
    {
        return Err(UpdateError::Busy { take_id }.into());
    }
    if !paths.previous.is_file() {
        return Err(UpdateError::NoPrevious(paths.previous.display().to_string()).into());
    }
    let restored = artifact::run_version(&paths.previous)?;
    let current = artifact::run_version(&paths.installed).unwrap_or_else(|_| "unknown".into());
    install::rollback(&paths)?;
    let st = UpdateState::new(
        Phase::RolledBack,
        &current,
        &restored,
        &paths,
        "rolled back by an operator",
    );
    state::save(&config.state_dir, &st)?;
    println!(
        "rolled back {} to {restored} at {}",
        current,
        paths.installed.display()
    );
    restart_daemon(config, running.is_some(), no_restart);
    Ok(())
}
