//! Rakkr recording jobs, run on our nodes: claimed (a capture group at
//! once), each recorded as a take of its own (id = the job's id, its
//! channels, its duration given to the agent so the take ends on time
//! without the link), and delivered chunk by chunk (`runner`).
//!
//! plan.rs     the job's command → channels, outputs, codec, segments
//! node.rs     what the runner asks of the node (takes, files, receipts)
//! deliver.rs  which chunk is next, from the node's state alone
//! render.rs   take files → the job's deliverable (ffmpeg-next)
//! encode.rs   the encoder end of a render (FLAC, WAV, MP3)
//! lease.rs    the job's lease and status, a task of its own
//! runner.rs   one task per job: status, stop, delivery
//!
//! Nothing about a job is stored by the bridge: a restarted bridge (or
//! another one the node links to) adopts the node's unfinished job takes
//! ([`Jobs::adopt`]) and the node's receipts say what was delivered.

pub mod deliver;
mod encode;
pub mod lease;
pub mod node;
pub mod plan;
pub mod render;
pub mod runner;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rakkr_controller::ControllerHandle;
use serde_json::Value;

use crate::api::RakkrApi;
use crate::metrics::Metrics;

/// Takes the bridge starts for jobs are named after them: Rakkr's job
/// ids start so (`job_<uuid>`), and the puller pulls only these.
pub const TAKE_PREFIX: &str = "job_";
/// Most jobs one node runs at once through this bridge.
pub const MAX_JOBS_PER_NODE: usize = 16;

/// The job runners of every node.
#[derive(Debug)]
pub struct Jobs {
    pub api: RakkrApi,
    pub handle: ControllerHandle,
    pub metrics: Arc<Metrics>,
    /// The puller's directory: `<cache>/<node>/<take>/<file>`.
    pub cache: PathBuf,
    /// How long a job's lease is kept while its node is away.
    pub grace: Duration,
    /// `(node, job)` with a runner.
    running: Mutex<HashSet<(String, String)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    pub fn new(
        api: RakkrApi,
        handle: ControllerHandle,
        metrics: Arc<Metrics>,
        cache: PathBuf,
        grace: Duration,
    ) -> Self {
        Self {
            api,
            handle,
            metrics,
            cache,
            grace,
            running: Mutex::default(),
        }
    }

    fn count(&self, node: &str) -> usize {
        locked(&self.running)
            .iter()
            .filter(|(n, _)| n == node)
            .count()
    }

    /// Marks job `id` failed with `reason`.
    pub async fn fail(&self, token: &str, id: &str, reason: &str) {
        let path = format!("/api/v1/recording-jobs/{id}/failed");
        let sent = self
            .api
            .post_bytes(
                &path,
                token,
                vec![("x-rakkr-reason", reason.to_owned())],
                Vec::new(),
            )
            .await;
        tracing::warn!(job = id, reason, answer = ?sent, "job marked failed");
    }

    /// Claims the node's next queued jobs (all of a capture group) and
    /// starts them, if the node has room.
    pub async fn claim(self: &Arc<Self>, node: &str, token: &str) {
        if self.count(node) >= MAX_JOBS_PER_NODE {
            return;
        }
        let path = self.api.node_path(node, "recording-jobs/claim-next-group");
        match self.api.call("POST", &path, token, None).await {
            Ok((204, _)) => {}
            Ok((200, v)) => {
                for job in v["data"].as_array().into_iter().flatten() {
                    self.spawn(node, token, job, true);
                }
            }
            other => tracing::warn!(%node, answer = ?other, "claiming jobs failed"),
        }
    }

    /// Takes over the node's job takes not delivered yet (after a restart
    /// of the bridge, or a node that comes from another bridge).
    pub async fn adopt(self: &Arc<Self>, node: &str, token: &str) {
        let takes = match node::list(&self.handle, node).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%node, error = %e, "listing the node's takes failed: its jobs are adopted on the next link");
                return;
            }
        };
        let mut seen = HashSet::new();
        for t in takes {
            let job = node::job_of(&t.take_id).to_owned();
            let open = t.status == "recording" || t.received < t.files;
            if !t.take_id.starts_with(TAKE_PREFIX) || !open || !seen.insert(job.clone()) {
                continue;
            }
            if locked(&self.running).contains(&(node.to_owned(), job.clone())) {
                continue;
            }
            let path = format!("/api/v1/recording-jobs/{job}");
            match self.api.call("GET", &path, token, None).await {
                Ok((200, v))
                    if matches!(
                        v["data"]["status"].as_str(),
                        Some("running" | "stop_requested")
                    ) =>
                {
                    tracing::info!(%node, %job, "adopting the node's unfinished job");
                    self.spawn(node, token, &v["data"], false);
                }
                Ok((200, v)) => {
                    tracing::info!(%node, %job, status = %v["data"]["status"], "a job take the controller no longer runs: left on the node");
                }
                other => {
                    tracing::warn!(%node, %job, answer = ?other, "reading an unfinished job failed")
                }
            }
        }
    }

    fn spawn(self: &Arc<Self>, node: &str, token: &str, job: &Value, start: bool) {
        let Some((id, recording)) = runner::ids(job) else {
            tracing::warn!(%node, "a claimed job without id or recordingId: ignored");
            return;
        };
        let key = (node.to_owned(), id.clone());
        if !locked(&self.running).insert(key.clone()) {
            return;
        }
        let (jobs, token, command) = (self.clone(), token.to_owned(), job["command"].clone());
        tokio::spawn(async move {
            jobs.metrics.jobs_running.inc();
            let plan = match plan::plan(&command) {
                Ok(p) => Some(p),
                Err(why) => {
                    jobs.fail(&token, &id, &format!("bridge_refused_command: {why}"))
                        .await;
                    None
                }
            };
            if let Some(plan) = plan {
                let r = runner::Runner {
                    jobs: jobs.clone(),
                    node: key.0.clone(),
                    token: token.clone(),
                    job: id.clone(),
                    recording,
                    plan,
                };
                let started = if start { r.start_take().await } else { Ok(()) };
                match started {
                    Ok(()) => r.run().await,
                    Err(why) => {
                        jobs.fail(&token, &id, &format!("node_refused_take: {why}"))
                            .await;
                    }
                }
            }
            jobs.metrics.jobs_running.dec();
            locked(&jobs.running).remove(&key);
        });
    }
}
