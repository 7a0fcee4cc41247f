//! Probation while the daemon runs: commit a freshly installed binary
//! once the controller welcomed it, it captured clean audio and stayed up;
//! otherwise restore the previous one (`update::probation::restore`) and
//! restart. Also reports a rollback the controller has not heard of. The
//! policy and the audio health gate are described in `update::probation`.

use std::sync::Arc;
use std::time::Duration;

use rakkr_protocol::EventBody;

use crate::node::{LinkStatus, Node};
use crate::update::probation::restore;
use crate::update::state::{self, Phase, UpdateState};

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

/// Audio an updated binary must capture cleanly before it is committed.
pub const AUDIO_PROOF: Duration = Duration::from_secs(3);

/// Waits until the recorder has captured [`AUDIO_PROOF`] of audio without
/// a loss. `Ok` at once when there is no device to prove (`auto` found
/// none); `Err` (why) when `deadline` passes first.
async fn audio_gate(node: &Node, deadline: tokio::time::Instant) -> Result<(), String> {
    let auto = matches!(
        node.config.capture.device,
        crate::config::DeviceSelector::Auto
    );
    let Some(rec) = node.recorder.get() else {
        return Err("the recorder did not start".into());
    };
    // (frames, lost) at the start of the current clean stretch.
    let mut clean: Option<(u64, u64)> = None;
    let mut why = String::from("the capture device delivered no audio");
    loop {
        let st = rec.status().await.map_err(|e| e.to_string())?;
        if auto
            && st.device.is_empty()
            && st
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no usable capture device"))
        {
            tracing::info!(
                "no capture device on this node: the update's audio health gate does not apply"
            );
            return Ok(());
        }
        if st.device_ok && st.rate > 0 {
            match clean {
                Some((f0, l0)) if st.lost == l0 && st.frames >= f0 => {
                    if st.frames - f0 >= AUDIO_PROOF.as_secs() * u64::from(st.rate) {
                        tracing::info!(device = %st.device, "the update captures clean audio");
                        return Ok(());
                    }
                }
                Some(_) => {
                    why = format!("audio was lost on {} (xrun or overflow)", st.device);
                    clean = Some((st.frames, st.lost));
                }
                None => clean = Some((st.frames, st.lost)),
            }
        } else {
            clean = None;
            if let Some(e) = st.error {
                why = e;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
    let failed = if welcomed {
        // Welcomed: it must also capture clean audio, and stay up.
        let (audio, ()) = tokio::join!(
            audio_gate(
                &node,
                deadline.max(tokio::time::Instant::now() + AUDIO_PROOF * 2)
            ),
            tokio::time::sleep(cfg.stable)
        );
        audio.err().map(|why| {
            format!(
                "{} did not capture {:?} of clean audio within its probation ({:?}): {why}",
                st.version, AUDIO_PROOF, cfg.probation
            )
        })
    } else {
        Some(format!(
            "{} was not welcomed by the controller within {:?} of starting",
            st.version, cfg.probation
        ))
    };
    if let Some(reason) = failed {
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
    st.phase = Phase::Committed;
    st.reported = true;
    st.reason = format!(
        "welcomed, capturing clean audio, and up for {:?}",
        cfg.stable
    );
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
