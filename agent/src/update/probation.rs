//! Probation of a freshly installed binary.
//!
//! At daemon start ([`on_start`]): a binary on probation counts its starts;
//! past `update.max_starts` (it keeps crashing or being stopped before it
//! commits) the previous binary is restored and the process exits to be
//! restarted into it. While running ([`watch`]): welcomed by the controller
//! within `update.probation` and then up for `update.stable` → committed;
//! not welcomed in time → restored and restarted. The restored binary
//! reports the rollback to the controller ([`report`]).

use std::sync::Arc;

use anyhow::Context;
use rakkr_protocol::EventBody;

use super::install::Paths;
use super::state::{self, Phase, UpdateState};
use crate::build_info::VERSION;
use crate::config::Config;
use crate::node::{LinkStatus, Node};

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
fn restore(config: &Config, st: &mut UpdateState, reason: String) -> anyhow::Result<()> {
    tracing::error!(%reason, restoring = %st.previous_version, "update failed probation; rolling back");
    let paths = Paths::resolve(Some(std::path::Path::new(&st.install_path)))?;
    super::install::rollback(&paths).context("restoring the previous binary")?;
    st.phase = Phase::RolledBack;
    st.reason = reason;
    st.reported = false;
    state::save(&config.state_dir, st)
}

/// Queues the event for an outcome the controller has not heard of yet.
pub async fn report(node: &Arc<Node>) -> anyhow::Result<()> {
    let dir = node.config.state_dir.clone();
    let Some(mut st) = state::load(&dir)? else {
        return Ok(());
    };
    if st.reported || st.phase != Phase::RolledBack {
        return Ok(());
    }
    node.emit(EventBody::UpdateRolledBack {
        version: st.version.clone(),
        restored: st.previous_version.clone(),
        reason: st.reason.clone(),
    })
    .await?;
    st.reported = true;
    state::save(&dir, &st)
}

/// Runs for a binary on probation; commits or rolls back.
pub async fn watch(node: Arc<Node>, mut st: UpdateState) {
    let cfg = node.config.update.clone();
    let mut status = node.status.subscribe();
    let deadline = tokio::time::Instant::now() + cfg.probation;
    let welcomed = loop {
        if matches!(*status.borrow_and_update(), LinkStatus::Connected { .. }) {
            break true;
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => break false,
        }
    };
    if !welcomed {
        let reason = format!(
            "{} was not welcomed by the controller within {:?} of starting",
            st.version, cfg.probation
        );
        let config = node.config.clone();
        let done = tokio::task::spawn_blocking(move || restore(&config, &mut st, reason)).await;
        match done {
            Ok(Ok(())) => node.request_restart(),
            Ok(Err(e)) => tracing::error!(
                error = format!("{e:#}"),
                "rollback failed; staying on this version"
            ),
            Err(e) => tracing::error!(error = %e, "rollback failed; staying on this version"),
        }
        return;
    }
    tokio::time::sleep(cfg.stable).await;
    st.phase = Phase::Committed;
    st.reported = true;
    st.reason = format!("welcomed and up for {:?}", cfg.stable);
    if let Err(e) = state::save(&node.config.state_dir, &st) {
        tracing::error!(error = format!("{e:#}"), "could not commit the update");
        return;
    }
    tracing::info!(version = %st.version, previous = %st.previous_version, "update committed");
    if let Err(e) = node
        .emit(EventBody::UpdateCommitted {
            version: st.version.clone(),
            previous: st.previous_version.clone(),
        })
        .await
    {
        tracing::error!(error = format!("{e:#}"), "could not queue the commit event");
    }
}
