//! Probation of a freshly installed binary.
//!
//! At daemon start ([`on_start`]): a binary on probation counts its starts;
//! past `update.max_starts` (it keeps crashing or being stopped before it
//! commits) the previous binary is restored and the process exits to be
//! restarted into it. While running (`crate::jobs::probation::watch`):
//! welcomed by the controller within `update.probation` and then up for
//! `update.stable` → committed; not welcomed in time → restored
//! ([`restore`]) and restarted. The restored binary reports the rollback to
//! the controller (`crate::jobs::probation::report`).
//!
//! The audio health gate: a node records audio, so an update that cannot
//! capture is a failed update even when the controller welcomes it. When a
//! capture device is configured (or `auto` found one), the binary must
//! also capture `crate::jobs::probation::AUDIO_PROOF` of audio without an xrun or a loss within
//! the probation window before it is committed; otherwise it is rolled back
//! like any failed probation, and the reason names the device and what
//! went wrong.

use anyhow::Context;

use super::install::Paths;
use super::state::{self, Phase, UpdateState};
use crate::build_info::VERSION;
use crate::config::Config;

/// What the daemon does after [`on_start`].
#[derive(Debug)]
pub enum OnStart {
    Normal,
    /// This binary is on probation: run [`watch`].
    Probation(UpdateState),
    /// The previous binary was restored: exit to be restarted into it.
    RolledBack,
}

pub fn on_start(config: &Config) -> anyhow::Result<OnStart> {
    let dir = &config.state_dir;
    let Some(mut st) = state::load(dir)? else {
        return Ok(OnStart::Normal);
    };
    if st.phase != Phase::Probation {
        return Ok(OnStart::Normal);
    }
    if st.version != VERSION {
        // Someone put another binary in place (an operator rollback, or a
        // package upgrade) before this update committed.
        st.phase = Phase::RolledBack;
        st.reason = format!(
            "{VERSION} was started instead of {} during its probation",
            st.version
        );
        st.reported = false;
        state::save(dir, &st)?;
        return Ok(OnStart::Normal);
    }
    st.starts += 1;
    if st.starts > config.update.max_starts {
        let reason = format!(
            "{} started {} times without passing probation (it crashed or was stopped each time)",
            st.version,
            st.starts - 1
        );
        restore(config, &mut st, reason)?;
        return Ok(OnStart::RolledBack);
    }
    state::save(dir, &st)?;
    tracing::info!(
        version = VERSION,
        start = st.starts,
        of = config.update.max_starts,
        "on probation after an update"
    );
    Ok(OnStart::Probation(st))
}

/// Restores the previous binary and records why.
pub fn restore(config: &Config, st: &mut UpdateState, reason: String) -> anyhow::Result<()> {
    tracing::error!(%reason, restoring = %st.previous_version, "update failed probation; rolling back");
    let paths = Paths::resolve(Some(std::path::Path::new(&st.install_path)))?;
    super::install::rollback(&paths).context("restoring the previous binary")?;
    st.phase = Phase::RolledBack;
    st.reason = reason;
    st.reported = false;
    state::save(&config.state_dir, st)
}
