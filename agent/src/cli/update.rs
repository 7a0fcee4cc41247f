//! `update apply | status | rollback`: the operator's and Ansible's way to
//! install a release on the node. `apply` installs only a signed release:
//! the manifest's signature is verified with this binary's release keys
//! before the artifact is unpacked or run. Every refusal leaves the
//! installed binary untouched; exit codes come from [`UpdateError::exit_code`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::config::Config;
use crate::control::{self, Reply, Request};
use crate::update::UpdateError;
use crate::update::artifact::{self, Expect, Policy};
use crate::update::install::{self, Paths};
use crate::update::release::{self, Keys, SignedRelease};
use crate::update::state::{self, Phase, UpdateState};

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[arg(long, value_name = "PATH")]
    pub artifact: PathBuf,
    /// The release's signed manifest; default: release-manifest.json
    /// beside the artifact.
    #[arg(long, value_name = "PATH")]
    pub release_manifest: Option<PathBuf>,
    /// Its minisign signature; default: the manifest's path + .minisig.
    #[arg(long, value_name = "PATH")]
    pub signature: Option<PathBuf>,
    /// The artifact's SHA-256 (64 hex digits), checked too (a transfer
    /// check: the signed manifest is what makes it authentic).
    #[arg(long, value_name = "HEX", conflicts_with = "sha256_file")]
    sha256: Option<String>,
    /// A sha256sum-format file holding the artifact's hash.
    #[arg(long, value_name = "PATH")]
    sha256_file: Option<PathBuf>,
    /// Binary to replace (symlinks followed); default: this binary.
    #[arg(long, value_name = "PATH")]
    pub install_path: Option<PathBuf>,
    /// The version the binary must report.
    #[arg(long, value_name = "YYYY.MM.DD-N")]
    pub expect_version: Option<String>,
    /// Install even if it is not newer than the installed version.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Install even while a take records (the take is closed first).
    #[arg(long)]
    pub force: bool,
    /// Do not ask a running agent to restart into the new binary.
    #[arg(long)]
    pub no_restart: bool,
}

/// The running daemon's status, if one runs on this state directory.
fn daemon(config: &Config) -> Option<control::StatusReply> {
    match control::request(&config.state_dir, &Request::Status) {
        Ok(Reply::Status(s)) => Some(*s),
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

/// Reads at most `max` bytes of `path`; `None` when it does not exist.
fn read_bounded(path: &Path, max: usize) -> Result<Option<Vec<u8>>, UpdateError> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UpdateError::io(format!("opening {}", path.display()))(e)),
    };
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(UpdateError::io(format!("reading {}", path.display())))?;
    if buf.len() > max {
        return Err(UpdateError::Signature(format!(
            "{} is over {max} bytes: not a release manifest or signature",
            path.display()
        )));
    }
    Ok(Some(buf))
}

/// The signed release for `a`: manifest and signature read (from beside
/// the artifact unless given) and verified with this build's keys.
fn signed_release(config: &Config, a: &ApplyArgs) -> Result<SignedRelease, UpdateError> {
    use rakkr_protocol::limits::{RELEASE_MANIFEST_MAX, SIGNATURE_MAX};
    let manifest_path = a.release_manifest.clone().unwrap_or_else(|| {
        a.artifact
            .parent()
            .unwrap_or(Path::new("."))
            .join("release-manifest.json")
    });
    let sig_path = a.signature.clone().unwrap_or_else(|| {
        let mut p = manifest_path.clone().into_os_string();
        p.push(".minisig");
        PathBuf::from(p)
    });
    let missing = |p: &Path| {
        UpdateError::Signature(format!(
            "{} does not exist; give the release's release-manifest.json and its .minisig (--release-manifest, --signature)",
            p.display()
        ))
    };
    let manifest = read_bounded(&manifest_path, RELEASE_MANIFEST_MAX)?
        .ok_or_else(|| missing(&manifest_path))?;
    let sig = read_bounded(&sig_path, SIGNATURE_MAX)?.ok_or_else(|| missing(&sig_path))?;
    let sig = String::from_utf8(sig)
        .map_err(|_| UpdateError::Signature(format!("{} is not text", sig_path.display())))?;
    let keys = Keys::built_in().with_configured(&config.update.trusted_keys);
    let r = release::verify(&manifest, &sig, &keys)?;
    if let Some(v) = &a.expect_version {
        r.expect_version(v)?;
    }
    Ok(r)
}

pub fn apply(config: &Config, a: ApplyArgs) -> anyhow::Result<()> {
    let sha = match (&a.sha256, &a.sha256_file) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(p)) => Some(
            std::fs::read_to_string(p)
                .map_err(UpdateError::io(format!("reading {}", p.display())))?,
        ),
        (None, None) => None,
    };
    let sha = match sha {
        None => None,
        Some(sha) => Some(
            artifact::parse_sha256(&sha)
                .with_context(|| format!("{:?} is not a SHA-256 (64 hex digits)", sha.trim()))
                .context(crate::exit::Failure::Usage)?,
        ),
    };
    // NOTE: first, before the daemon is asked anything or a file is made.
    let release = signed_release(config, &a)?;
    println!(
        "release {} (revision {}) signed by release key {}",
        release.manifest.version,
        if release.manifest.git_revision.is_empty() {
            "unknown"
        } else {
            &release.manifest.git_revision
        },
        release.key_id
    );
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
                release,
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
                crate::update::install::install_with_state(
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
