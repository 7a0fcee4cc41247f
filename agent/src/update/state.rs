//! `<state>/update/state.json`: the last install and where its probation
//! stands. Written atomically; read at every daemon start.

use std::path::Path;

use anyhow::Context;
use rakkr_protocol::fsutil::atomic_write;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Installed; not yet welcomed-and-stable.
    Probation,
    /// Passed probation.
    Committed,
    /// Failed probation (or an operator rolled back); previous restored.
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateState {
    pub phase: Phase,
    pub version: String,
    pub previous_version: String,
    pub install_path: String,
    pub previous_path: String,
    pub installed_at: String,
    /// Daemon starts of `version` while on probation.
    pub starts: u32,
    pub reason: String,
    /// The outcome's event has been queued for the controller.
    pub reported: bool,
}

impl UpdateState {
    /// A record of `version` replacing `previous_version` at `paths`, now.
    pub fn new(
        phase: Phase,
        version: &str,
        previous_version: &str,
        paths: &super::install::Paths,
        reason: &str,
    ) -> Self {
        Self {
            phase,
            version: version.to_owned(),
            previous_version: previous_version.to_owned(),
            install_path: paths.installed.display().to_string(),
            previous_path: paths.previous.display().to_string(),
            installed_at: crate::util::now_iso8601(),
            starts: 0,
            reason: reason.to_owned(),
            reported: false,
        }
    }
}

fn path(state_dir: &Path) -> std::path::PathBuf {
    super::dir(state_dir).join("state.json")
}

pub fn load(state_dir: &Path) -> anyhow::Result<Option<UpdateState>> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("reading update state {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading update state {}", p.display())),
    }
}

pub fn save(state_dir: &Path, st: &UpdateState) -> anyhow::Result<()> {
    let p = path(state_dir);
    std::fs::create_dir_all(super::dir(state_dir))
        .with_context(|| format!("creating {}", super::dir(state_dir).display()))?;
    let bytes = serde_json::to_vec_pretty(st)?;
    atomic_write(&p, &bytes, 0o600)
        .and_then(|()| crate::util::give_like(super::dir(state_dir).as_path(), state_dir))
        .and_then(|()| crate::util::give_like(&p, state_dir))
        .with_context(|| format!("writing update state {}", p.display()))
}
