//! The controller's take commands: `ListTakes` and `TakeFiles` (what the
//! node holds, page by page within `limits::LISTING_MAX`), and `Receipt`
//! (files the controller holds: recorded durably, then retention may run).
//! File bytes themselves are read on the link's reader (`link::reads`).

use std::sync::Arc;

use rakkr_protocol::limits::LISTING_MAX;
use rakkr_protocol::{EventBody, FailureCode, FileReceipt, Reply};

use crate::node::Node;
use crate::take::listing;
use crate::take::receipt::Outcome;

type Refusal = (FailureCode, String);

/// File names per `FilesReceived` event (well inside `limits::EVENT_MAX`).
const NAMES_PER_EVENT: usize = 256;

/// Runs a take command on the node.
pub async fn act(node: &Arc<Node>, body: &rakkr_protocol::CommandBody) -> Result<Reply, Refusal> {
    use rakkr_protocol::CommandBody as C;
    let recordings = node.config.recordings_path.clone();
    match body {
        C::ListTakes { after } => {
            let after = after.clone();
            blocking(move || Ok(list_takes(&recordings, &after))).await
        }
        C::TakeFiles { take_id, after } => {
            let (id, after) = (take_id.clone(), after.clone());
            blocking(move || take_files(&recordings, &id, &after)).await
        }
        C::Receipt { take_id, files } => receipt(node, take_id, files).await,
        _ => Err((FailureCode::Internal, "not a take command".into())),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err((FailureCode::Internal, e.to_string())))
}

/// Bytes `v` takes in a reply (JSON is an upper bound of postcard's size).
fn cost<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

pub fn list_takes(recordings: &std::path::Path, after: &str) -> Reply {
    let (mut takes, mut used, mut more) = (Vec::new(), 0, false);
    for (id, m) in listing::takes(recordings) {
        if id.as_str() <= after {
            continue;
        }
        let Ok(m) = m else {
            // A take whose manifest cannot be read is `takes verify`'s;
            // here it is skipped (it has nothing to transfer yet).
            continue;
        };
        let s = listing::summary(&recordings.join(&id), &m);
        used += cost(&s);
        if used > LISTING_MAX && !takes.is_empty() {
            more = true;
            break;
        }
        takes.push(s);
    }
    Reply::Takes { takes, more }
}

fn take_files(recordings: &std::path::Path, id: &str, after: &str) -> Result<Reply, Refusal> {
    let dir = listing::take_dir(recordings, id).map_err(|e| (FailureCode::InvalidArgument, e))?;
    let m = crate::take::manifest::Manifest::read(&dir)
        .map_err(|e| (FailureCode::Internal, format!("{e:#}")))?;
    let states = listing::file_states(&dir, &m);
    // Manifest order; `after` names the last file of the previous page.
    let start = if after.is_empty() {
        0
    } else {
        states
            .iter()
            .position(|f| f.file == after)
            .map(|i| i + 1)
            .ok_or_else(|| {
                (
                    FailureCode::InvalidArgument,
                    format!("take {id} lists no file {after}"),
                )
            })?
    };
    let (mut files, mut used, mut more) = (Vec::new(), 0, false);
    for f in states.into_iter().skip(start) {
        used += cost(&f);
        if used > LISTING_MAX && !files.is_empty() {
            more = true;
            break;
        }
        files.push(f);
    }
    Ok(Reply::TakeFiles {
        take_id: id.to_owned(),
        files,
        more,
    })
}

/// Records receipts: through the engine for the recording take, directly
/// (under the take's lock) otherwise. Then events, then retention.
async fn receipt(node: &Arc<Node>, id: &str, files: &[FileReceipt]) -> Result<Reply, Refusal> {
    let dir = listing::take_dir(&node.config.recordings_path, id)
        .map_err(|e| (FailureCode::InvalidArgument, e))?;
    let mut outcome = None;
    // Bounded: the take is either recording (the engine answers) or not
    // (the lock is free); a take ending in between needs one more turn.
    for _ in 0..3 {
        let (d, f) = (dir.clone(), files.to_vec());
        let direct = blocking(move || {
            crate::take::receipt::record(&d, &f)
                .map_err(|e| (FailureCode::Internal, format!("{e:#}")))
        })
        .await?;
        if let Some(o) = direct {
            outcome = Some(o);
            break;
        }
        let Some(rec) = node.recorder.get() else {
            return Err((FailureCode::Busy, "the recorder is not running yet".into()));
        };
        if let Some(o) = rec
            .receipt(id.to_owned(), files.to_vec())
            .await
            .map_err(|r| (r.code, r.message))?
        {
            outcome = Some(o);
            break;
        }
    }
    let Outcome { accepted, refused } = outcome.ok_or_else(|| {
        (
            FailureCode::Busy,
            format!("take {id} is locked by another process: send the receipt again"),
        )
    })?;
    for names in accepted.chunks(NAMES_PER_EVENT) {
        emit(
            node,
            EventBody::FilesReceived {
                take_id: id.to_owned(),
                files: names.to_vec(),
            },
        )
        .await;
    }
    for r in &refused {
        tracing::warn!(take = %id, file = %r.file, expected = %r.expected_sha256, received = %r.received_sha256, reason = %r.reason, "receipt refused");
        emit(
            node,
            EventBody::ReceiptRefused {
                take_id: id.to_owned(),
                file: r.file.clone(),
                expected_sha256: r.expected_sha256.clone(),
                received_sha256: r.received_sha256.clone(),
                reason: r.reason.clone(),
            },
        )
        .await;
    }
    if !accepted.is_empty() {
        node.retention.notify_one();
    }
    Ok(Reply::Receipt {
        take_id: id.to_owned(),
        accepted,
        refused,
    })
}

async fn emit(node: &Arc<Node>, body: EventBody) {
    if let Err(e) = node.emit(body).await {
        tracing::error!(error = format!("{e:#}"), "could not queue a transfer event");
    }
}
