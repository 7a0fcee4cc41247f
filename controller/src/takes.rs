//! The reference controller's take puller: every closed file of every
//! take of a connected node goes into `<takes>/<node>/<take>/<file>`,
//! verified, and the node gets a receipt for it.
//!
//! One puller per session (started when the node is welcomed, stopped
//! with the session). It runs a sync pass at once (so it resumes whatever
//! a restart of either side interrupted), again whenever the node reports
//! a started take, a closed segment or an ended take, and every 30 s:
//! `ListTakes` → `TakeFiles` for takes with unreceived files → for each
//! hashed, unreceived file: pull it with `ReadFile` into `<file>.part`
//! (resuming at the part's length, [`WINDOW`] reads in flight), hash it,
//! move it into place only if the hash is the manifest's, and send a
//! `Receipt` with the hash it computed (a mismatch is kept as
//! `<file>.mismatch`, and the agent refuses that receipt and says so).
//! A take whose files are all received also gets its `manifest.json`.
//!
//! Bounded: a reply that does not come within [`STALL`] restarts the file
//! from the part's length; a session ends the puller.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rakkr_protocol::message::{
    AgentMsg, CommandBody, ControllerMsg, FileRead, FileReceipt, MAX_CHUNK_LEN, Outcome, Reply,
    TakeFileState,
};
use sha2::Digest;
use tokio::sync::mpsc;

use crate::{ControllerEvent, ControllerHandle};

/// Reads in flight per file.
pub const WINDOW: u64 = 8;
/// No answer this long: ask again from what is on disk.
const STALL: Duration = Duration::from_secs(20);
/// How long a command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A sync pass at least this often.
const RESCAN: Duration = Duration::from_secs(30);

/// What a puller needs.
pub(crate) struct Puller {
    pub(crate) handle: ControllerHandle,
    pub(crate) node: String,
    /// `<takes>/<node>`.
    pub(crate) dir: PathBuf,
    /// `FileChunk` and `FileReadFailed` of this session.
    pub(crate) replies: mpsc::Receiver<AgentMsg>,
    /// Poked by the session when the node reports a take started, a
    /// segment closed, a take ended or recovered.
    pub(crate) poke: std::sync::Arc<tokio::sync::Notify>,
    pub(crate) next_request: u64,
    pub(crate) policy: crate::PullPolicy,
    /// `(take, file, sha256)` stored and verified by this puller, so a
    /// file waiting for its deferred receipt is not hashed again each pass.
    pub(crate) verified: std::collections::HashSet<(String, String, String)>,
}

/// The local name of a take's file, if the names are safe.
fn local(dir: &Path, take: &str, file: &str) -> Option<PathBuf> {
    let safe = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains('/')
            && !s.contains('\0')
            && s.len() <= 255
    };
    (safe(take) && safe(file)).then(|| dir.join(take).join(file))
}

impl Puller {
    pub(crate) async fn run(mut self) {
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(node = %self.node, error = %e, "take sync pass failed; trying again");
            }
            // A take event of this node (a poke while the pass ran counts:
            // Notify keeps one), or RESCAN.
            let _ = tokio::time::timeout(RESCAN, self.poke.notified()).await;
        }
    }

    async fn command(&self, body: CommandBody) -> Result<Reply, String> {
        let r = self
            .handle
            .command(&self.node, body, COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        match r.outcome {
            Outcome::Done(reply) => Ok(reply),
            Outcome::Failed(f) => Err(format!("{:?}: {}", f.code, f.message)),
        }
    }

    /// One pass over every take of the node.
    async fn sync(&mut self) -> Result<(), String> {
        let mut after = String::new();
        // Bounded: each page moves `after` forward, or ends.
        loop {
            let Reply::Takes { takes, more } = self
                .command(CommandBody::ListTakes {
                    after: after.clone(),
                })
                .await?
            else {
                return Err("ListTakes: unexpected reply".into());
            };
            for t in &takes {
                if !t.take_id.starts_with(&self.policy.take_prefix) {
                    continue;
                }
                let done = t.files > 0 && t.received == t.files && t.status != "recording";
                let local_manifest = local(&self.dir, &t.take_id, "manifest.json");
                if done && local_manifest.as_ref().is_some_and(|p| p.exists()) {
                    continue;
                }
                self.sync_take(&t.take_id, &t.status).await?;
            }
            match takes.last() {
                Some(last) if more => after.clone_from(&last.take_id),
                _ => return Ok(()),
            }
        }
    }

    async fn sync_take(&mut self, take: &str, status: &str) -> Result<(), String> {
        let mut after = String::new();
        let (mut receipts, mut all) = (Vec::new(), true);
        loop {
            let Reply::TakeFiles { files, more, .. } = self
                .command(CommandBody::TakeFiles {
                    take_id: take.into(),
                    after: after.clone(),
                })
                .await?
            else {
                return Err("TakeFiles: unexpected reply".into());
            };
            for f in &files {
                if f.received {
                    continue;
                }
                all = false;
                // Not hashed yet (a moment after its segment closed), or
                // not a regular file on the node (size 0): not now.
                if f.sha256.is_empty() || f.size == 0 {
                    continue;
                }
                if let Some(sha256) = self.pull_file(take, f).await?
                    && !self.policy.deferred_receipts
                {
                    receipts.push(FileReceipt {
                        file: f.file.clone(),
                        sha256,
                    });
                }
            }
            match files.last() {
                Some(last) if more => after.clone_from(&last.file),
                _ => break,
            }
        }
        for batch in receipts.chunks(rakkr_protocol::limits::RECEIPT_FILES_MAX) {
            let reply = self
                .command(CommandBody::Receipt {
                    take_id: take.into(),
                    files: batch.to_vec(),
                })
                .await?;
            if let Reply::Receipt {
                accepted, refused, ..
            } = reply
            {
                tracing::info!(node = %self.node, take, accepted = accepted.len(), refused = refused.len(), "receipt sent");
                self.handle.shared.emit(ControllerEvent::TakeReceipt {
                    node: self.node.clone(),
                    take_id: take.into(),
                    accepted,
                    refused: refused.into_iter().map(|r| r.file).collect(),
                });
            }
        }
        let ended = status != "recording";
        if ended
            && !self.policy.deferred_receipts
            && (all || !receipts.is_empty())
            && let Some(path) = local(&self.dir, take, "manifest.json")
        {
            let manifest = self.pull_whole(take, "manifest.json").await?;
            write_atomic(&path, &manifest)
                .map_err(|e| format!("storing {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Pulls `f` of `take`; returns the SHA-256 of what arrived (also when
    /// it differs from the node's: the receipt says so), or `None` when the
    /// node could not serve it now.
    async fn pull_file(&mut self, take: &str, f: &TakeFileState) -> Result<Option<String>, String> {
        let Some(path) = local(&self.dir, take, &f.file) else {
            tracing::warn!(node = %self.node, take, file = %f.file, "unsafe take or file name: not pulled");
            return Ok(None);
        };
        let key = (take.to_owned(), f.file.clone(), f.sha256.clone());
        if path.exists()
            && (self.verified.contains(&key) || sha256_file(&path).is_ok_and(|h| h == f.sha256))
        {
            return Ok(Some(f.sha256.clone()));
        }
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))
            .map_err(|e| format!("creating the take directory: {e}"))?;
        let part = path.with_file_name(format!("{}.part", f.file));
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| format!("opening {}: {e}", part.display()))?;
        let mut have = out.metadata().map_err(|e| e.to_string())?.len();
        if have > f.size {
            out.set_len(0).map_err(|e| e.to_string())?;
            have = 0;
        }
        let resumed = have;
        if !self
            .receive(take, &f.file, f.size, &mut out, &mut have)
            .await?
        {
            return Ok(None);
        }
        out.sync_all().map_err(|e| e.to_string())?;
        drop(out);
        let sha256 = sha256_file(&part).map_err(|e| format!("hashing {}: {e}", part.display()))?;
        let verified = sha256 == f.sha256;
        let to = if verified {
            path.clone()
        } else {
            path.with_file_name(format!("{}.mismatch", f.file))
        };
        std::fs::rename(&part, &to).map_err(|e| format!("placing {}: {e}", to.display()))?;
        if let Some(d) = to.parent() {
            let _ = std::fs::File::open(d).and_then(|d| d.sync_all());
        }
        if verified {
            self.verified.insert(key);
            tracing::info!(node = %self.node, take, file = %f.file, bytes = have, resumed, "take file stored and verified");
        } else {
            tracing::warn!(node = %self.node, take, file = %f.file, expected = %f.sha256, got = %sha256, "take file differs from the node's manifest: kept as .mismatch");
        }
        self.handle.shared.emit(ControllerEvent::TakeFileStored {
            node: self.node.clone(),
            take_id: take.into(),
            file: f.file.clone(),
            bytes: have,
            resumed_at: resumed,
            sha256: sha256.clone(),
            verified,
        });
        Ok(Some(sha256))
    }

    /// Pulls a small file whole (the manifest), in one read at most
    /// `MAX_CHUNK_LEN` at a time.
    async fn pull_whole(&mut self, take: &str, file: &str) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        let mut have = 0u64;
        if !self
            .receive(take, file, u64::MAX, &mut buf, &mut have)
            .await?
        {
            return Err(format!("{take}/{file} could not be read now"));
        }
        Ok(buf)
    }

    /// Receives `file` from offset `*have` up to `size` (or its end) into
    /// `out`, `WINDOW` reads in flight. `false`: the node refused a read.
    async fn receive(
        &mut self,
        take: &str,
        file: &str,
        size: u64,
        out: &mut impl Write,
        have: &mut u64,
    ) -> Result<bool, String> {
        let tx = self.handle.sender(&self.node).map_err(|e| e.to_string())?;
        // request id → offset, of the reads in flight.
        let mut asked: HashMap<u64, u64> = HashMap::new();
        let mut next = *have;
        // Out-of-order answers wait here until their turn (the node answers
        // in order; this only matters across a re-ask).
        let mut early: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut ended = false;
        // Bounded: every turn gets an answer or a stall, which re-asks;
        // a session that ends makes `replies` fail.
        loop {
            while !ended && next < size && (asked.len() as u64) < WINDOW {
                self.next_request += 1;
                let id = self.next_request;
                let read = FileRead {
                    request_id: id,
                    take_id: take.into(),
                    file: file.into(),
                    offset: next,
                    len: MAX_CHUNK_LEN,
                };
                tx.send(crate::Outgoing::Msg(ControllerMsg::ReadFile(read)))
                    .await
                    .map_err(|_| "the session ended".to_owned())?;
                asked.insert(id, next);
                next += u64::from(MAX_CHUNK_LEN);
            }
            if asked.is_empty() && (ended || *have >= size) {
                return Ok(true);
            }
            match tokio::time::timeout(STALL, self.replies.recv()).await {
                Err(_) => {
                    tracing::info!(node = %self.node, take, file, offset = *have, "no answer: asking again");
                    asked.clear();
                    early.clear();
                    next = *have;
                    ended = false;
                }
                Ok(None) => return Err("the session ended".into()),
                Ok(Some(AgentMsg::FileChunk(c))) => {
                    if asked.remove(&c.request_id).is_none() {
                        continue;
                    }
                    if c.data.len() < MAX_CHUNK_LEN as usize {
                        ended = true;
                    }
                    early.insert(c.offset, c.data);
                    // Bounded by the window.
                    while let Some(data) = early.remove(have) {
                        out.write_all(&data)
                            .map_err(|e| format!("writing {file}: {e}"))?;
                        *have += data.len() as u64;
                    }
                }
                Ok(Some(AgentMsg::FileReadFailed(f))) => {
                    if asked.remove(&f.request_id).is_none() {
                        continue;
                    }
                    if f.reason.starts_with("busy") {
                        // Ask again from what is on disk, after a moment.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        asked.clear();
                        early.clear();
                        next = *have;
                        continue;
                    }
                    tracing::warn!(node = %self.node, take, file, reason = %f.reason, "the node refused a read");
                    return Ok(false);
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

/// SHA-256 (hex) of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    rakkr_protocol::fsutil::atomic_write(path, bytes, 0o644)
}

/// What the controller holds for each node: `(node, take, files, bytes)`.
pub fn held(takes: &Path) -> Vec<(String, String, usize, u64)> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        v.sort();
        v
    };
    for (node, nd) in dirs(takes) {
        for (take, td) in dirs(&nd) {
            let files: Vec<_> = std::fs::read_dir(&td)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n != "manifest.json" && !n.ends_with(".part") && !n.ends_with(".mismatch")
                })
                .collect();
            let bytes = files
                .iter()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            out.push((node.clone(), take, files.len(), bytes));
        }
    }
    out
}
