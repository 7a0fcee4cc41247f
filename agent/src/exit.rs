//! Exit codes: stable, documented in the README, for Ansible and systemd.
//! Errors are tagged with a [`Failure`] context; `main` maps the first one
//! found in the chain to its code.

use std::process::ExitCode;

/// What kind of failure ended the command. The `Display` text is the first
/// line of the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("invalid configuration")]
    Config,
    #[error("trust material missing or invalid")]
    Trust,
    #[error("state directory unusable")]
    State,
    #[error("another agent is already running")]
    AlreadyRunning,
    #[error("the running agent could not be reached")]
    NoDaemon,
    #[error("audio capture failed")]
    Capture,
    #[error("installing trust failed")]
    TrustStore,
    #[error("the controller refused the enrollment")]
    EnrollRefused,
    #[error("the controller could not be reached")]
    Unreachable,
    #[error("usage error")]
    Usage,
    #[error("a take is damaged or could not be repaired")]
    Damaged,
    #[error("the console did not answer")]
    ConsoleSilent,
}

impl Failure {
    pub fn code(self) -> u8 {
        match self {
            Failure::Config => 3,
            Failure::Trust => 4,
            Failure::State => 5,
            Failure::AlreadyRunning => 6,
            Failure::NoDaemon => 7,
            Failure::Capture => 8,
            Failure::TrustStore => 25,
            Failure::EnrollRefused => 26,
            Failure::Unreachable => 27,
            Failure::Usage => USAGE,
            Failure::Damaged => 9,
            Failure::ConsoleSilent => 28,
        }
    }
}

/// Generic runtime failure.
pub const FAILURE: u8 = 1;
/// Usage error (clap's own code).
pub const USAGE: u8 = 2;
/// The daemon stopped cleanly to be restarted into an updated (or
/// restored) binary; systemd's `Restart=always` starts it again.
pub const RESTART: u8 = 75;

/// The exit code of `err`: its [`Failure`] tag, or what `typed` finds in it
/// (the binary passes the errors of `update` and `trust`, which know their
/// own codes; this module depends on neither), else [`FAILURE`].
pub fn code_of(err: &anyhow::Error, typed: impl Fn(&anyhow::Error) -> Option<u8>) -> ExitCode {
    // NOTE: anyhow finds a context value through downcast_ref (not chain()).
    let code = err
        .downcast_ref::<Failure>()
        .map(|f| f.code())
        .or_else(|| typed(err))
        .unwrap_or(FAILURE);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn tagged_errors_map_to_their_code() {
        let e = Err::<(), _>(std::io::Error::other("disk"))
            .context(Failure::State)
            .context("opening outbox")
            .unwrap_err();
        assert_eq!(code_of(&e, |_| None), ExitCode::from(5));
        assert_eq!(
            code_of(&anyhow::anyhow!("x"), |_| None),
            ExitCode::from(FAILURE)
        );
        assert_eq!(
            code_of(&anyhow::anyhow!("x"), |_| Some(17)),
            ExitCode::from(17)
        );
    }
}
