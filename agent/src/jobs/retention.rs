//! Runs retention (`take::retention`): after receipts (`Node.retention`
//! is notified) and every minute, it deletes the takes the policy chooses
//! and reports each (`TakeDeleted`); when the disk stays short and nothing
//! may go, it says so once per episode (`RetentionBlocked`, and in
//! `status`). Nothing happens with the default policy (keep every take).

use std::sync::Arc;
use std::time::Duration;

use rakkr_protocol::EventBody;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::take::retention::{self, Disk, Plan};

const EVERY: Duration = Duration::from_secs(60);

pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let mut settings = node.settings.subscribe();
    let mut was_blocked = false;
    loop {
        // NOTE: the policy in force at each pass (a push swaps it whole).
        let policy = settings.borrow_and_update().retention;
        let recordings = node.config.recordings_path.clone();
        let done = if policy.is_keep_all() {
            Ok((Vec::new(), None))
        } else {
            tokio::task::spawn_blocking(move || pass(&recordings, &policy)).await
        };
        match done {
            Ok((deleted, blocked)) => {
                for (take_id, files, bytes, reason) in deleted {
                    emit(
                        &node,
                        EventBody::TakeDeleted {
                            take_id,
                            files,
                            bytes,
                            reason,
                        },
                    )
                    .await;
                }
                match blocked {
                    Some((free_bytes, reason)) if !was_blocked => {
                        tracing::warn!(%reason, "retention cannot free space");
                        node.retention_blocked.send_replace(Some(reason.clone()));
                        emit(&node, EventBody::RetentionBlocked { free_bytes, reason }).await;
                        was_blocked = true;
                    }
                    Some(_) => {}
                    None => {
                        if was_blocked {
                            node.retention_blocked.send_replace(None);
                        }
                        was_blocked = false;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "retention pass failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = node.retention.notified() => {}
            Ok(()) = settings.changed() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

type Deleted = (String, u32, u64, String);

/// One pass: plan, delete, and what stayed short (free bytes, why).
fn pass(
    recordings: &std::path::Path,
    policy: &retention::Policy,
) -> (Vec<Deleted>, Option<(u64, String)>) {
    let Some(disk) = disk(recordings) else {
        return (Vec::new(), None);
    };
    let Plan { delete, blocked } = retention::plan(
        &retention::candidates(recordings),
        policy,
        disk,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    let mut deleted = Vec::new();
    for (id, why) in delete {
        match retention::delete(recordings, &id) {
            Ok((files, bytes)) => {
                tracing::info!(take = %id, files, bytes, reason = %why, "take deleted by retention");
                deleted.push((id, files, bytes, why));
            }
            Err(e) => tracing::warn!(take = %id, error = format!("{e:#}"), "retention kept a take"),
        }
    }
    let free = disk.free + deleted.iter().map(|d| d.2).sum::<u64>();
    (deleted, blocked.map(|why| (free, why)))
}

/// Free and total bytes of the filesystem holding `dir`.
pub fn disk(dir: &std::path::Path) -> Option<Disk> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = st.fragment_size() as u64;
    Some(Disk {
        free: st.blocks_available() as u64 * frag,
        total: st.blocks() as u64 * frag,
    })
}

async fn emit(node: &Arc<Node>, body: EventBody) {
    if let Err(e) = node.emit(body).await {
        tracing::error!(
            error = format!("{e:#}"),
            "could not queue a retention event"
        );
    }
}
