//! One task per job, from claim (or adoption) to its last chunk: keeps the
//! job's lease, follows its status, has the node stop the take when the
//! controller asks, and delivers each chunk when it is ready (see
//! `deliver`): pulled and verified by the controller library's puller
//! (into `<cache>/<node>/<take>/`), rendered (`render`), PUT, and only
//! after the controller's 201 acknowledged to the node with a receipt.
//!
//! The task outlives the node's link: while the node is away the agent
//! records on. The lease is a task of its own (`lease`), which publishes
//! the job's status; an upload that failed for a reason that may pass is
//! tried again with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rakkr_protocol::{CommandBody, TakeFormat, TakeRequest};
use serde_json::Value;
use tokio::sync::watch;

use super::deliver::{Next, Part};
use super::lease::{Lease, Seen, TICK};
use super::plan::Plan;
use super::{Jobs, node};

/// Longest wait between upload attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What became of one delivery.
#[derive(Debug)]
enum Step {
    /// The controller has it, the node has the receipt.
    Sent,
    /// Its files are not all pulled and verified yet.
    NotPulled,
    Ended(End),
}

/// How a runner ends.
#[derive(Debug)]
enum End {
    Delivered,
    /// The controller ended the job (or refused us): why.
    Ended(String),
}

#[derive(Debug)]
pub struct Runner {
    pub jobs: Arc<Jobs>,
    pub node: String,
    pub token: String,
    pub job: String,
    pub recording: String,
    pub plan: Plan,
}

impl Runner {
    /// Starts the job's take on the node.
    pub async fn start_take(&self) -> Result<(), String> {
        let req = TakeRequest {
            take_id: self.job.clone(),
            channels: self.plan.device_channels.clone(),
            format: Some(TakeFormat::Flac),
            segment_seconds: self.plan.segment_seconds(),
            pre_roll_ms: 0,
            duration_ms: u64::from(self.plan.duration_seconds) * 1000,
            job_id: self.job.clone(),
            start_at_ms: 0,
            end_at_ms: 0,
        };
        let h = &self.jobs.handle;
        node::command(h, &self.node, CommandBody::StartTakeWith(req))
            .await
            .map(|_| ())
    }

    async fn stop_take(&self) {
        let body = CommandBody::StopTake {
            take_id: self.job.clone(),
        };
        if let Err(e) = node::command(&self.jobs.handle, &self.node, body).await {
            tracing::debug!(job = %self.job, error = %e, "stop not taken (the take may have ended)");
        }
    }

    fn linked(&self) -> bool {
        self.jobs.handle.node(&self.node).is_some()
    }

    pub async fn run(self) {
        let end = self.turns().await;
        match &end {
            End::Delivered => tracing::info!(node = %self.node, job = %self.job, "job delivered"),
            End::Ended(why) => {
                tracing::warn!(node = %self.node, job = %self.job, %why, "job ended without a complete delivery; the node keeps its audio")
            }
        }
    }

    async fn turns(&self) -> End {
        let (tx, mut seen) = watch::channel(Seen::Unknown);
        let lease = tokio::spawn(
            Lease {
                jobs: self.jobs.clone(),
                node: self.node.clone(),
                token: self.token.clone(),
                job: self.job.clone(),
                recording: self.recording.clone(),
            }
            .run(tx),
        );
        let end = self.deliveries(&mut seen).await;
        lease.abort();
        end
    }

    /// Follows the job's status and delivers what is ready.
    async fn deliveries(&self, seen: &mut watch::Receiver<Seen>) -> End {
        let mut stopped = false;
        let (mut retry_at, mut backoff) = (Instant::now(), TICK);
        // Bounded: ends when the job is delivered or ended.
        loop {
            // A new status, or a tick for deliveries.
            let _ = tokio::time::timeout(TICK, seen.changed()).await;
            let status = seen.borrow_and_update().clone();
            let linked = self.linked();
            match &status {
                Seen::Gone(code) => return End::Ended(format!("reading the job: {code}")),
                Seen::Status(s) if s == "completed" => return End::Delivered,
                // NOTE: a failed job (its lease ran out while the node was
                // away) is not stopped: the show goes on and the node keeps
                // all of it. A cancelled one was ended by an operator.
                Seen::Status(s) if s == "failed" => {
                    return End::Ended("the controller marked the job failed".into());
                }
                Seen::Status(s) if s == "cancelled" => {
                    if linked {
                        self.stop_take().await;
                    }
                    return End::Ended("the controller cancelled the job".into());
                }
                Seen::Status(s) if s == "stop_requested" && linked && !stopped => {
                    self.stop_take().await;
                    stopped = true;
                }
                _ => {}
            }
            if !linked || Instant::now() < retry_at {
                continue;
            }
            match self.deliver_ready().await {
                Ok(Some(end)) => return end,
                Ok(None) => backoff = TICK,
                Err(e) => {
                    crate::metrics::Metrics::ok(&self.jobs.metrics.uploads, false);
                    tracing::warn!(node = %self.node, job = %self.job, error = %e, "delivery failed; trying again in {backoff:?}");
                    retry_at = Instant::now() + backoff.mul_f64(0.5 + fastrand::f64());
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Delivers every chunk that is ready. `Some`: the job is over.
    async fn deliver_ready(&self) -> Result<Option<End>, String> {
        let channels = self.plan.device_channels.len();
        let chunked = self.plan.chunk_seconds.is_some();
        // Bounded: each turn delivers a chunk (the next one differs) or ends.
        loop {
            let takes = node::job_takes(&self.jobs.handle, &self.node, &self.job).await?;
            match super::deliver::next(&takes, channels, chunked) {
                Next::Wait(why) => {
                    tracing::trace!(job = %self.job, why, "nothing to deliver yet");
                    return Ok(None);
                }
                // Every segment is at the controller, yet the job runs:
                // none went as the last (a crash lost the take's end
                // after a full segment). Nothing is left to send it with.
                Next::Done => {
                    return Ok(Some(End::Ended(
                        "every segment is at the controller but none went as the last: the lease is let go and the controller keeps the chunks (a partial recording)".into(),
                    )));
                }
                Next::Empty => {
                    self.jobs
                        .fail(&self.token, &self.job, "no_audio_recorded")
                        .await;
                    return Ok(Some(End::Ended("the take recorded no audio".into())));
                }
                Next::Deliver { index, last, parts } => {
                    match self.deliver(index, last, &parts).await? {
                        Step::NotPulled => return Ok(None),
                        Step::Ended(end) => return Ok(Some(end)),
                        Step::Sent if last => return Ok(Some(End::Delivered)),
                        Step::Sent => {}
                    }
                }
            }
        }
    }

    fn local(&self, take: &str, file: &str) -> PathBuf {
        self.jobs.cache.join(&self.node).join(take).join(file)
    }

    /// Renders and uploads one delivery; receipts follow the 201.
    async fn deliver(
        &self,
        index: Option<u32>,
        last: bool,
        parts: &[Part],
    ) -> Result<Step, String> {
        let mut files = std::collections::BTreeMap::<u16, Vec<PathBuf>>::new();
        for p in parts {
            for f in &p.files {
                let path = self.local(&p.take, &f.file);
                if !path.exists() {
                    return Ok(Step::NotPulled);
                }
                let take_channel = f.channels.first().copied().unwrap_or(1);
                let device = self.plan.device_channels[usize::from(take_channel) - 1];
                files.entry(device).or_default().push(path);
            }
        }
        let began = Instant::now();
        let ext = self.plan.codec.extension();
        let dir = self.jobs.cache.join(&self.node).join(".render");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = dir.join(format!("{}-{}.{ext}", self.job, index.unwrap_or(0)));
        let (plan, o) = (self.plan.clone(), out.clone());
        let rendered =
            tokio::task::spawn_blocking(move || super::render::render(&plan, &files, &o))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("rendering: {e:#}"))?;
        let secs = (rendered.frames + u64::from(self.plan.sample_rate) / 2)
            / u64::from(self.plan.sample_rate.max(1));
        let mut path = format!("/api/v1/recordings/{}/cache-file", self.recording);
        if let Some(i) = index {
            path.push_str(&format!("?chunk={i}"));
            if last {
                path.push_str(&format!("&chunkTotal={}", i + 1));
            }
        }
        let headers = vec![
            ("content-type", self.plan.codec.content_type().to_owned()),
            ("x-rakkr-file-name", self.file_name(index)),
            ("x-rakkr-duration-seconds", secs.max(1).to_string()),
            ("x-rakkr-recording-job-id", self.job.clone()),
        ];
        let sent = self
            .jobs
            .api
            .put_file(&path, &self.token, headers, out.clone())
            .await;
        let _ = std::fs::remove_file(&out);
        match sent {
            Ok((201, _)) => {}
            Ok((409, v)) => {
                return Ok(Step::Ended(End::Ended(format!(
                    "the controller refused the upload: {}",
                    v["error"]
                ))));
            }
            Ok((403, _)) => {
                return Ok(Step::Ended(End::Ended(
                    "the recording is another node's (403)".into(),
                )));
            }
            Ok((413, _)) => {
                self.jobs
                    .fail(
                        &self.token,
                        &self.job,
                        &format!("cache_file_too_large: {} bytes", rendered.bytes),
                    )
                    .await;
                self.stop_take().await;
                return Ok(Step::Ended(End::Ended(format!(
                    "{} bytes are over the controller's limit (413)",
                    rendered.bytes
                ))));
            }
            Ok((401, _)) if !self.jobs.api.ready().await => {
                return Err("the controller is not ready (401 with /readyz not ready)".into());
            }
            Ok((401, _)) => {
                return Ok(Step::Ended(End::Ended(
                    "the node's token was refused (401)".into(),
                )));
            }
            Ok((code, v)) => return Err(format!("the controller answered {code}: {v}")),
            Err(e) => return Err(e),
        }
        let m = &self.jobs.metrics;
        crate::metrics::Metrics::ok(&m.uploads, true);
        m.bytes_delivered.inc_by(rendered.bytes);
        m.delivery_seconds.observe(began.elapsed().as_secs_f64());
        tracing::info!(node = %self.node, job = %self.job, chunk = ?index, last, bytes = rendered.bytes, frames = rendered.frames, "delivered");
        for p in parts {
            node::receipt(&self.jobs.handle, &self.node, &p.take, &p.files).await?;
            for f in &p.files {
                let _ = std::fs::remove_file(self.local(&p.take, &f.file));
            }
        }
        Ok(Step::Sent)
    }

    /// The name the controller keeps: the job's, with the chunk number.
    fn file_name(&self, index: Option<u32>) -> String {
        let name = &self.plan.file_name;
        match (index, name.rsplit_once('.')) {
            (None, _) => name.clone(),
            (Some(i), Some((stem, ext))) => format!("{stem}-{:04}.{ext}", i + 1),
            (Some(i), None) => format!("{name}-{:04}", i + 1),
        }
    }
}

/// The job's id and recording, from the controller's job JSON.
pub fn ids(job: &Value) -> Option<(String, String)> {
    Some((
        job["id"].as_str()?.to_owned(),
        job["recordingId"].as_str()?.to_owned(),
    ))
}
