//! What the runner asks of a node about its job's takes, over the
//! controller library's commands: the takes (the job's own and the
//! continuations a crash made: `<job>`, `<job>-r2`, …), their closed files
//! by segment, how far a recording one has got; starting, stopping and
//! receipts.

use std::collections::BTreeMap;
use std::time::Duration;

use rakkr_controller::ControllerHandle;
use rakkr_protocol::{CommandBody, FileReceipt, Outcome, Reply, TakeFileState, TakeSummary};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One of the job's takes, with its closed files by segment.
#[derive(Debug, Clone)]
pub struct JobTake {
    pub summary: TakeSummary,
    pub segments: BTreeMap<u32, Vec<TakeFileState>>,
    /// Frames recorded so far, for a take still recording (else 0).
    pub live_frames: u64,
}

impl JobTake {
    pub fn ended(&self) -> bool {
        self.summary.status != "recording"
    }
}

/// `n` of `<job>-r<n>` (1 for the job's own take).
pub fn continuation(job: &str, take: &str) -> Option<u32> {
    if take == job {
        return Some(1);
    }
    take.strip_prefix(job)?.strip_prefix("-r")?.parse().ok()
}

/// The job a take belongs to, by the bridge's naming.
pub fn job_of(take: &str) -> &str {
    match take.rsplit_once("-r") {
        Some((job, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => job,
        _ => take,
    }
}

pub async fn command(h: &ControllerHandle, node: &str, body: CommandBody) -> Result<Reply, String> {
    let r = h
        .command(node, body, COMMAND_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match r.outcome {
        Outcome::Done(reply) => Ok(reply),
        Outcome::Failed(f) => Err(format!("{:?}: {}", f.code, f.message)),
    }
}

/// Every item of a paged listing: `page(after)` answers one page and
/// whether more follow; the next page starts after the last item's `key`.
// NOTE: a closure returning a future, not an async closure: the futures
// of the latter do not prove `Send` to `tokio::spawn` (a known limit).
async fn paged<T, F>(
    mut page: impl FnMut(String) -> F,
    key: impl Fn(&T) -> String,
) -> Result<Vec<T>, String>
where
    F: std::future::Future<Output = Result<(Vec<T>, bool), String>>,
{
    let (mut all, mut after) = (Vec::new(), String::new());
    // Bounded: each page moves `after` on, or ends.
    loop {
        let (items, more) = page(after).await?;
        let last = items.last().map(&key);
        all.extend(items);
        match last {
            Some(l) if more => after = l,
            _ => return Ok(all),
        }
    }
}

/// Every take on the node (paged).
pub async fn list(h: &ControllerHandle, node: &str) -> Result<Vec<TakeSummary>, String> {
    paged(
        |after| async move {
            match command(h, node, CommandBody::ListTakes { after }).await? {
                Reply::Takes { takes, more } => Ok((takes, more)),
                _ => Err("ListTakes: unexpected reply".into()),
            }
        },
        |t: &TakeSummary| t.take_id.clone(),
    )
    .await
}

async fn files(h: &ControllerHandle, node: &str, take: &str) -> Result<Vec<TakeFileState>, String> {
    paged(
        |after| async move {
            let body = CommandBody::TakeFiles {
                take_id: take.into(),
                after,
            };
            match command(h, node, body).await? {
                Reply::TakeFiles { files, more, .. } => Ok((files, more)),
                _ => Err("TakeFiles: unexpected reply".into()),
            }
        },
        |f: &TakeFileState| f.file.clone(),
    )
    .await
}

/// The job's takes on the node, in order, with their files.
pub async fn job_takes(
    h: &ControllerHandle,
    node: &str,
    job: &str,
) -> Result<Vec<JobTake>, String> {
    let mut takes: Vec<(u32, TakeSummary)> = list(h, node)
        .await?
        .into_iter()
        .filter_map(|t| continuation(job, &t.take_id).map(|n| (n, t)))
        .collect();
    takes.sort_by_key(|(n, _)| *n);
    let live: BTreeMap<String, u64> = if takes.iter().any(|(_, t)| t.status == "recording") {
        match command(h, node, CommandBody::RunningTakes).await? {
            Reply::Running { takes, .. } => takes
                .into_iter()
                .map(|t| (t.take.take_id, t.take.frames))
                .collect(),
            _ => return Err("RunningTakes: unexpected reply".into()),
        }
    } else {
        BTreeMap::new()
    };
    let mut out = Vec::new();
    for (_, summary) in takes {
        let mut segments: BTreeMap<u32, Vec<TakeFileState>> = BTreeMap::new();
        for f in files(h, node, &summary.take_id).await? {
            segments.entry(f.segment).or_default().push(f);
        }
        out.push(JobTake {
            live_frames: live.get(&summary.take_id).copied().unwrap_or(0),
            summary,
            segments,
        });
    }
    Ok(out)
}

/// Tells the node its files are safe; the files it accepted.
pub async fn receipt(
    h: &ControllerHandle,
    node: &str,
    take: &str,
    files: &[TakeFileState],
) -> Result<Vec<String>, String> {
    let mut accepted = Vec::new();
    for batch in files.chunks(rakkr_protocol::limits::RECEIPT_FILES_MAX) {
        let body = CommandBody::Receipt {
            take_id: take.into(),
            files: batch
                .iter()
                .map(|f| FileReceipt {
                    file: f.file.clone(),
                    sha256: f.sha256.clone(),
                })
                .collect(),
        };
        match command(h, node, body).await? {
            Reply::Receipt {
                accepted: a,
                refused,
                ..
            } => {
                if let Some(r) = refused.first() {
                    return Err(format!(
                        "the node refused the receipt of {}: {}",
                        r.file, r.reason
                    ));
                }
                accepted.extend(a);
            }
            _ => return Err("Receipt: unexpected reply".into()),
        }
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_belong_to_their_job() {
        let job = "job_6f1c";
        assert_eq!(continuation(job, "job_6f1c"), Some(1));
        assert_eq!(continuation(job, "job_6f1c-r2"), Some(2));
        assert_eq!(continuation(job, "job_6f1c-r12"), Some(12));
        assert_eq!(continuation(job, "job_6f1c2"), None);
        assert_eq!(continuation(job, "job_6f1c-rx"), None);
        assert_eq!(job_of("job_6f1c-r3"), "job_6f1c");
        assert_eq!(job_of("job_6f1c"), "job_6f1c");
        assert_eq!(job_of("job_a-rb"), "job_a-rb");
    }
}
