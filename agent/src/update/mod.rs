//! Self-update: fetch → verify → install beside the running binary →
//! restart → probation → commit or roll back.
//!
//! ```text
//! release.rs    signed releases: release keys, the minisign signature over
//!               release-manifest.json, what the manifest admits
//! artifact.rs   verify a candidate (transfer size and SHA-256, the signed
//!               manifest's entry, tar.gz or bare ELF, signed binary hash,
//!               architecture, `--version`, version policy)
//! install.rs    atomic install keeping the previous binary; rollback
//! state.rs      <state>/update/state.json (probation bookkeeping)
//! probation.rs  at start: count starts, roll back a crashing binary;
//!               while running: commit after welcome + stable time
//! transfer.rs   pull an artifact over the link (resumable) or HTTPS
//! channel.rs    where transfers meet the link (Fetch out, Chunk back)
//! (the daemon's handling of a controller Update command, and probation
//! while running, are jobs that drive the node: see `crate::jobs`)
//! ```
//!
//! Files: `<state>/update/staging/` holds one attempt's download and
//! candidate (removed before each attempt and at daemon start);
//! `<install dir>/<name>.previous` is the binary kept for rollback.
//!
//! NOTE: every refusal happens before `install::install` touches the
//! installed path; after it, only `install::rollback` does. No candidate
//! is unpacked or run before its release signature verified
//! (`release::verify`) and the signed manifest admitted it.

pub mod artifact;
pub mod channel;
pub mod install;
pub mod probation;
pub mod release;
pub mod state;
pub mod transfer;

use rakkr_protocol::UpdateFailure;

/// Why an update was refused. Each has its own CLI exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("checksum mismatch: the artifact's SHA-256 is {actual}, expected {expected}")]
    Checksum { expected: String, actual: String },
    #[error("size mismatch: the artifact has {actual} bytes, expected {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("wrong architecture: the binary is for {found}, this machine needs {expected}")]
    WrongArchitecture { found: String, expected: String },
    #[error("not an agent executable: {0}")]
    NotExecutable(String),
    #[error(
        "downgrade refused: {candidate} is not newer than the installed {installed} (pass --allow-downgrade to install it anyway)"
    )]
    Downgrade {
        candidate: String,
        installed: String,
    },
    #[error("version mismatch: the binary reports {found}, the update named {expected}")]
    VersionMismatch { expected: String, found: String },
    #[error("a take is recording ({take_id}); the update waits until it ends (or pass --force)")]
    Busy { take_id: String },
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("unsigned or wrongly signed release: {0}")]
    Signature(String),
    #[error("no previous binary to roll back to at {0}")]
    NoPrevious(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl UpdateError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| UpdateError::Io { context, source }
    }

    /// CLI exit code (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            UpdateError::Checksum { .. } | UpdateError::Size { .. } => 10,
            UpdateError::WrongArchitecture { .. } => 11,
            UpdateError::Downgrade { .. } => 12,
            UpdateError::Busy { .. } => 13,
            UpdateError::Io { .. } | UpdateError::Transfer(_) => 14,
            UpdateError::NotExecutable(_) | UpdateError::VersionMismatch { .. } => 15,
            UpdateError::NoPrevious(_) => 16,
            UpdateError::Signature(_) => 17,
        }
    }

    /// The wire's name for it.
    pub fn kind(&self) -> UpdateFailure {
        match self {
            UpdateError::Checksum { .. } => UpdateFailure::Checksum,
            UpdateError::Size { .. } => UpdateFailure::Size,
            UpdateError::WrongArchitecture { .. } => UpdateFailure::WrongArchitecture,
            UpdateError::NotExecutable(_) | UpdateError::NoPrevious(_) => {
                UpdateFailure::NotExecutable
            }
            UpdateError::Downgrade { .. } => UpdateFailure::Downgrade,
            UpdateError::VersionMismatch { .. } => UpdateFailure::VersionMismatch,
            UpdateError::Busy { .. } => UpdateFailure::Busy,
            UpdateError::Transfer(_) => UpdateFailure::Transfer,
            UpdateError::Io { .. } => UpdateFailure::Io,
            UpdateError::Signature(_) => UpdateFailure::Signature,
        }
    }
}

/// The update directory inside the state directory.
pub fn dir(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("update")
}

/// Removes a leftover staging directory (a crashed attempt must not block the next).
pub fn clean_staging(state_dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir(state_dir).join("staging"));
}
