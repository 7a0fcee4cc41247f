//! A fake of the Rakkr controller's recorder-node HTTP API, for tests and
//! benchmarks of `rakkr-bridge` (CI cannot run the real controller). A real
//! HTTP server (axum) on loopback, faithful to the contract in
//! `shared/reference/rakkr-agent-http-api.md` and the controller's source:
//! `{ "data": … }` replies, bearer tokens per node (401 unknown, 403 another
//! node's), 401 on node routes while the database is "down" (with
//! `/readyz` 503), job leases (`state.rs`), chunk and status semantics,
//! 400/409/413 where the controller answers them.
//!
//! Tests drive the controller side through [`FakeRakkr`]: enroll nodes,
//! queue jobs, request stops, take the database down, read what arrived.

mod auth;
mod files;
mod jobs;
mod nodes;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub use state::{JobStatus, State};

/// Options of a fake controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Job lease (the controller's RAKKR_RECORDING_JOB_LEASE_SECONDS: 30).
    pub lease: Duration,
    /// How often expired leases are swept besides each request (10 s).
    pub sweep: Duration,
    /// RAKKR_RECORDING_CACHE_MAX_BYTES (4 GiB).
    pub cache_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            sweep: Duration::from_secs(10),
            cache_max_bytes: 4 << 30,
        }
    }
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake controller; stops when dropped.
#[derive(Debug)]
pub struct FakeRakkr {
    pub addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRakkr {
    fn drop(&mut self) {
        self.server.abort();
        self.sweeper.abort();
    }
}

impl FakeRakkr {
    /// Serves on 127.0.0.1 (an ephemeral port).
    pub async fn start(opts: Options) -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(State::new(opts.lease, opts.cache_max_bytes)));
        let app = axum::Router::new()
            .merge(nodes::routes())
            .merge(jobs::routes())
            .merge(files::routes())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let sweeper = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(opts.sweep).await;
                    lock(&state).expire(SystemTime::now());
                }
            })
        };
        Ok(Self {
            addr,
            state,
            server,
            sweeper,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reads or changes the records.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Enrolls node `id` (as `POST /nodes/enroll` does); returns its token.
    pub fn enroll(&self, id: &str) -> String {
        let token = format!("rakkr_node_{}", random_hex());
        self.with(|s| {
            let node = s.nodes.entry(id.to_owned()).or_default();
            node.tokens.push(token.clone());
            node.config = serde_json::json!({
                "monitorEnhancement": {"engine": "none", "requested": false},
                "recorderCachePolicies": [],
                "recordingCapacity": {"maxConcurrentRecordings": 4},
            });
        });
        token
    }

    /// A single-use bootstrap token for node `id`.
    pub fn bootstrap_token(&self, id: &str) -> String {
        let token = format!("rakkr_bs_{}", random_hex());
        self.with(|s| s.bootstrap.insert(token.clone(), id.to_owned()));
        token
    }

    /// Queues a job for `node` with `command`; returns its id.
    pub fn queue_job(&self, node: &str, command: Value) -> String {
        self.with(|s| {
            let (id, rec) = (s.id("job"), s.id("rec"));
            s.recordings.insert(
                rec.clone(),
                state::Recording {
                    node_id: node.to_owned(),
                    ..Default::default()
                },
            );
            s.jobs.push(state::Job {
                id: id.clone(),
                node_id: node.to_owned(),
                recording_id: rec,
                command,
                status: JobStatus::Queued,
                created_at: SystemTime::now(),
                lease_expires_at: None,
                stop_requested_at: None,
                failure_reason: None,
                heartbeats: 0,
            });
            id
        })
    }

    /// The operator stops job `id` (only a queued or running one).
    pub fn request_stop(&self, id: &str) -> bool {
        self.with(|s| match s.job_mut(id) {
            Some(j) if matches!(j.status, JobStatus::Queued | JobStatus::Running) => {
                j.status = JobStatus::StopRequested;
                j.stop_requested_at = Some(SystemTime::now());
                true
            }
            _ => false,
        })
    }

    /// The database goes down (`false`) or comes back.
    pub fn set_ready(&self, ready: bool) {
        self.with(|s| s.ready = ready);
    }
}

pub(crate) fn random_hex() -> String {
    (0..4)
        .map(|_| format!("{:08x}", fastrand::u32(..)))
        .collect()
}
