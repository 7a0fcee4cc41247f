//! The fake controller's records: nodes with their bearer tokens, jobs with
//! their leases, recordings with their chunks. One `Mutex` holds it all
//! (requests are short; tests read it between them).
//!
//! Job life, as the Rakkr controller runs it: `queued` → (claim) `running`
//! with a lease of `lease` from each heartbeat → `completed` when the
//! primary file (or the chunk carrying `chunkTotal`) arrives. A lease that
//! runs out makes it `failed` (`lease_expired`); a stop request makes it
//! `stop_requested` (no more heartbeats: 409), and the node has one more
//! lease from the request to deliver, after which it is `cancelled`
//! (`stop_request_lease_expired`). Uploads to a failed or cancelled job
//! are refused with 409; to a completed one they are taken again
//! (idempotent). Leases are checked on every request that touches jobs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// A node as the controller knows it.
#[derive(Debug, Default)]
pub struct Node {
    /// Tokens that authenticate as this node (bootstrap revokes them all).
    pub tokens: Vec<String>,
    pub heartbeats: Vec<Value>,
    pub inventory: Option<Value>,
    pub meter_frames: Vec<Value>,
    pub health_events: Vec<Value>,
    /// The newest listen chunk: capture time, duration, WAV bytes.
    pub listen: Option<(String, u64, Vec<u8>)>,
    pub config: Value,
    /// The SSH public key a bootstrap stored.
    pub ssh_public_key: Option<String>,
    /// How old each meter frame (`capturedAt`) and health event
    /// (`openedAt`) was when it arrived, ms: what forwarding took.
    pub meter_lags_ms: Vec<i64>,
    pub event_lags_ms: Vec<i64>,
}

/// Milliseconds from the RFC 3339 time `at` to now (`None`: not a time).
pub fn lag_ms(at: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    let now = time::OffsetDateTime::now_utc();
    Some(((now - t).whole_microseconds() / 1_000) as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    StopRequested,
    Cancelled,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn wire(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::StopRequested => "stop_requested",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub node_id: String,
    pub recording_id: String,
    pub command: Value,
    pub status: JobStatus,
    pub created_at: SystemTime,
    pub lease_expires_at: Option<SystemTime>,
    pub stop_requested_at: Option<SystemTime>,
    pub failure_reason: Option<String>,
    pub heartbeats: u64,
}

/// One stored file or chunk.
#[derive(Debug, Clone)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub file_name: String,
    pub duration_seconds: u64,
    /// How many times this index was sent (a re-send replaces it).
    pub puts: u32,
}

#[derive(Debug, Default)]
pub struct Recording {
    pub node_id: String,
    /// Chunks by 0-based index (an unchunked file is chunk 0).
    pub chunks: BTreeMap<u32, Stored>,
    pub chunk_total: Option<u32>,
    pub raw: BTreeMap<u32, Stored>,
    pub cached: bool,
}

#[derive(Debug)]
pub struct State {
    pub nodes: BTreeMap<String, Node>,
    pub jobs: Vec<Job>,
    pub recordings: BTreeMap<String, Recording>,
    /// Single-use bootstrap tokens → node id.
    pub bootstrap: BTreeMap<String, String>,
    /// The database is up: `false` answers node routes 401 and /readyz 503.
    pub ready: bool,
    pub lease: Duration,
    /// Largest cache-file body (Content-Length), else 413.
    pub cache_max_bytes: u64,
    pub next_id: u64,
    /// Node requests answered 401 (what a client saw of an outage).
    pub unauthorized: std::sync::atomic::AtomicU64,
}

pub fn iso(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    time::OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl State {
    pub fn new(lease: Duration, cache_max_bytes: u64) -> Self {
        Self {
            nodes: BTreeMap::new(),
            jobs: Vec::new(),
            recordings: BTreeMap::new(),
            bootstrap: BTreeMap::new(),
            ready: true,
            lease,
            cache_max_bytes,
            next_id: 1,
            unauthorized: Default::default(),
        }
    }

    pub fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:06}", self.next_id)
    }

    /// The node a bearer token authenticates as.
    pub fn node_of(&self, token: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|(_, n)| n.tokens.iter().any(|t| t == token))
            .map(|(id, _)| id.clone())
    }

    /// Fails running jobs whose lease ran out, cancels stop requests whose
    /// delivery time ran out.
    pub fn expire(&mut self, now: SystemTime) {
        // NOTE: with the database down the controller's lease runner does
        // nothing either; leases that ran out meanwhile expire once it is
        // back.
        if !self.ready {
            return;
        }
        let lease = self.lease;
        for j in &mut self.jobs {
            match j.status {
                JobStatus::Running if j.lease_expires_at.is_some_and(|t| t <= now) => {
                    j.status = JobStatus::Failed;
                    j.failure_reason = Some("lease_expired".into());
                }
                JobStatus::StopRequested
                    if j.stop_requested_at.is_some_and(|t| t + lease <= now) =>
                {
                    j.status = JobStatus::Cancelled;
                    j.failure_reason = Some("stop_request_lease_expired".into());
                }
                _ => {}
            }
        }
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }

    /// The job as the API serialises it.
    pub fn job_json(&self, j: &Job) -> Value {
        let mut v = json!({
            "id": j.id,
            "nodeId": j.node_id,
            "recordingId": j.recording_id,
            "command": j.command,
            "status": j.status.wire(),
            "createdAt": iso(j.created_at),
        });
        let o = v.as_object_mut().expect("an object");
        if let Some(t) = j.lease_expires_at {
            o.insert("leaseExpiresAt".into(), iso(t).into());
            o.insert("claimedBy".into(), j.node_id.clone().into());
        }
        if let Some(t) = j.stop_requested_at {
            o.insert("stopRequestedAt".into(), iso(t).into());
        }
        if let Some(r) = &j.failure_reason {
            o.insert("failureReason".into(), r.clone().into());
        }
        if let Some(total) = self
            .recordings
            .get(&j.recording_id)
            .and_then(|r| r.chunk_total)
        {
            o.insert("chunkTotal".into(), total.into());
        }
        v
    }
}
