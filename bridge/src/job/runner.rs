//! One task per job, from claim (or adoption) to its last chunk: keeps the
//! job's lease, follows its status, has the node stop the take when the
//! controller asks, and delivers each chunk when it is ready (see
//! `deliver`): pulled and verified by the controller library's puller
//! (into `<cache>/<node>/<take>/`), rendered (`render`), PUT, and only
//! after the controller's 201 acknowledged to the node with a receipt.
//!
//! The task outlives the node's link: while the node is away the agent
//! records on, and the lease is kept for `grace`, then left to lapse (and
//! the controller told why). Every [`TICK`] the job is read and its lease
//! renewed (Rakkr's agent does both every 2 s); an upload that failed for
//! a reason that may pass is tried again with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rakkr_protocol::{CommandBody, TakeFormat, TakeRequest};
use serde_json::{Value, json};

use super::deliver::{Next, Part};
use super::plan::Plan;
use super::{Jobs, node};

/// Between lease heartbeats and job reads.
pub const TICK: Duration = Duration::from_secs(2);
/// Longest wait between upload attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

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
        let (mut offline_since, mut lapsed, mut stopped) = (None::<Instant>, false, false);
        let (mut retry_at, mut backoff) = (Instant::now(), TICK);
        let mut tick = tokio::time::interval(TICK);
        let api = &self.jobs.api;
        let job_path = format!("/api/v1/recording-jobs/{}", self.job);
        // Bounded: ends when the job is delivered or ended.
        loop {
            tick.tick().await;
            let linked = self.linked();
            if linked {
                offline_since = None;
            } else {
                offline_since.get_or_insert_with(Instant::now);
            }
            let status = match api.call("GET", &job_path, &self.token, None).await {
                Ok((200, v)) => v["data"]["status"].as_str().unwrap_or_default().to_owned(),
                Ok((401, _)) if !api.ready().await => continue,
                Ok((code @ (401 | 403 | 404), _)) => {
                    return End::Ended(format!("reading the job: {code}"));
                }
                other => {
                    tracing::warn!(job = %self.job, answer = ?other, "reading the job failed; next in {TICK:?}");
                    continue;
                }
            };
            match status.as_str() {
                "running" if offline_since.is_none_or(|t| t.elapsed() < self.jobs.grace) => {
                    let hb = format!("{job_path}/heartbeat");
                    let ok = matches!(api.call("POST", &hb, &self.token, None).await, Ok((200, _)));
                    crate::metrics::Metrics::ok(&self.jobs.metrics.lease_renewals, ok);
                }
                "running" if !lapsed => {
                    lapsed = true;
                    self.lapse(offline_since.map(|t| t.elapsed()).unwrap_or_default())
                        .await;
                }
                "stop_requested" if linked && !stopped => {
                    self.stop_take().await;
                    stopped = true;
                }
                "completed" => return End::Delivered,
                "failed" | "cancelled" => {
                    if linked {
                        self.stop_take().await;
                    }
                    return End::Ended(format!("the controller marked the job {status}"));
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

    /// The lease is let go: the node has been away too long.
    async fn lapse(&self, away: Duration) {
        tracing::warn!(node = %self.node, job = %self.job, away_s = away.as_secs(), "the node has been away longer than the lease grace: the job's lease is left to lapse (the node records on and keeps its audio)");
        let body = json!({
            "type": "agent.recording_job.lease_lapsed",
            "severity": "warning",
            "recordingId": self.recording,
            "details": {
                "jobId": self.job,
                "nodeAwaySeconds": away.as_secs(),
                "graceSeconds": self.jobs.grace.as_secs(),
                "reason": "the node's link to the bridge has been down longer than the grace",
            },
        });
        let path = format!("/api/v1/nodes/{}/health-events", self.node);
        let _ = self
            .jobs
            .api
            .call("POST", &path, &self.token, Some(body))
            .await;
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
                Next::Done => return Ok(None),
                Next::Empty => {
                    self.jobs
                        .fail(&self.token, &self.job, "no_audio_recorded")
                        .await;
                    return Ok(Some(End::Ended("the take recorded no audio".into())));
                }
                Next::Deliver { index, last, parts } => {
                    if let Some(end) = self.deliver(index, last, &parts).await? {
                        return Ok(Some(end));
                    }
                    if last {
                        return Ok(Some(End::Delivered));
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
    ) -> Result<Option<End>, String> {
        let mut files = std::collections::BTreeMap::<u16, Vec<PathBuf>>::new();
        for p in parts {
            for f in &p.files {
                let path = self.local(&p.take, &f.file);
                if !path.exists() {
                    // The puller has not stored and verified it yet.
                    return Ok(None);
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
                return Ok(Some(End::Ended(format!(
                    "the controller refused the upload: {}",
                    v["error"]
                ))));
            }
            Ok((403, _)) => {
                return Ok(Some(End::Ended(
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
                return Ok(Some(End::Ended(format!(
                    "{} bytes are over the controller's limit (413)",
                    rendered.bytes
                ))));
            }
            Ok((401, _)) if !self.jobs.api.ready().await => {
                return Err("the controller is not ready (401 with /readyz not ready)".into());
            }
            Ok((401, _)) => {
                return Ok(Some(End::Ended(
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
        Ok(None)
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
