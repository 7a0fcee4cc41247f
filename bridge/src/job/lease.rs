//! A job's lease, kept by a task of its own so that nothing the delivery
//! does (a render, a long upload, a node that does not answer) can delay
//! it: every [`TICK`] the job is read (its status published to the
//! runner) and, while it runs, its lease renewed — also while the node is
//! away, up to the bridge's grace; then the lease is left to lapse and the
//! controller is told why (`agent.recording_job.lease_lapsed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::Jobs;

/// Between lease heartbeats and job reads (Rakkr's agent: 2 s).
pub const TICK: Duration = Duration::from_secs(2);

/// The job as the lease task last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not read yet, or the controller could not answer.
    Unknown,
    Status(String),
    /// The controller no longer lets this node read it (401 while ready,
    /// 403, 404): the code.
    Gone(u16),
}

#[derive(Debug)]
pub struct Lease {
    pub jobs: Arc<Jobs>,
    pub node: String,
    pub token: String,
    pub job: String,
    pub recording: String,
}

impl Lease {
    /// Runs until the job ends or the runner drops `seen`'s receiver.
    pub async fn run(self, seen: watch::Sender<Seen>) {
        let api = &self.jobs.api;
        let path = format!("/api/v1/recording-jobs/{}", self.job);
        let (mut away_since, mut lapsed) = (None::<Instant>, false);
        let mut tick = tokio::time::interval(TICK);
        // Bounded: ends with the job or the runner.
        loop {
            tick.tick().await;
            if self.jobs.handle.node(&self.node).is_some() {
                away_since = None;
            } else {
                away_since.get_or_insert_with(Instant::now);
            }
            let now = match api.call("GET", &path, &self.token, None).await {
                Ok((200, v)) => {
                    Seen::Status(v["data"]["status"].as_str().unwrap_or_default().into())
                }
                Ok((401, _)) if !api.ready().await => Seen::Unknown,
                Ok((code @ (401 | 403 | 404), _)) => Seen::Gone(code),
                other => {
                    tracing::warn!(job = %self.job, answer = ?other, "reading the job failed; next in {TICK:?}");
                    Seen::Unknown
                }
            };
            let running = now == Seen::Status("running".into());
            let ended = matches!(&now, Seen::Gone(_))
                || matches!(&now, Seen::Status(s) if matches!(s.as_str(), "completed" | "failed" | "cancelled"));
            if seen.send(now).is_err() || ended {
                return;
            }
            let away = away_since.map(|t| t.elapsed()).unwrap_or_default();
            if running && away < self.jobs.grace {
                let hb = format!("{path}/heartbeat");
                let ok = matches!(api.call("POST", &hb, &self.token, None).await, Ok((200, _)));
                crate::metrics::Metrics::ok(&self.jobs.metrics.lease_renewals, ok);
            } else if running && !lapsed {
                lapsed = true;
                self.lapse(away).await;
            }
        }
    }

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
        let path = self.jobs.api.node_path(&self.node, "health-events");
        let _ = self
            .jobs
            .api
            .call("POST", &path, &self.token, Some(body))
            .await;
    }
}
