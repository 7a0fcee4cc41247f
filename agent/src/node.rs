//! The running node's shared state and the actions on it: emit an event,
//! take an acknowledgement, hand update transfers to the link. Owned by the
//! daemon; used by the link, the local control socket and `dispatch`
//! (controller commands).
//!
//! File work (outbox, command log) runs on tokio's blocking pool so the
//! link's heartbeats never wait behind an fsync.

use std::sync::{Arc, Mutex, MutexGuard};

use rakkr_protocol::{Event, EventBody, MeterFrame};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::command_log::CommandLog;
use crate::config::Config;
use crate::outbox::Outbox;

/// Longest operator note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 4096;

/// The link's state, for `status` and logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum LinkStatus {
    Starting,
    Connecting {
        attempt: u32,
    },
    Connected {
        controller: String,
        since: String,
        protocol: u16,
    },
    Disconnected {
        reason: String,
        retry_in_ms: u64,
    },
    /// The node certificate expired; the controller serves renewal only.
    RenewalOnly {
        controller: String,
        reason: String,
    },
    Stopping,
}

#[derive(Debug)]
pub struct Node {
    /// The configuration the daemon started with (what no push changes:
    /// the link, trust, paths).
    pub config: Config,
    /// The configuration in force, swapped whole when the controller
    /// pushes settings (see `jobs::configure`).
    pub settings: watch::Sender<Arc<Config>>,
    outbox: Mutex<Outbox>,
    pub(crate) commands: Mutex<CommandLog>,
    /// Commands run one at a time (a repeated id waits for the first to
    /// finish, then gets its result), off the link loop.
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// Signalled whenever an event is appended.
    pub new_events: Notify,
    pub status: watch::Sender<LinkStatus>,
    /// Latest meter frame (best effort, latest wins). Fed by capture.
    pub meter: watch::Sender<Option<MeterFrame>>,
    /// The recorder engine (set once the daemon has started it).
    pub recorder: std::sync::OnceLock<crate::engine::Handle>,
    /// Bumped each time the link is welcomed (a new session).
    pub sessions: watch::Sender<u64>,
    /// Update transfers between the update task and the link.
    pub update: crate::update::channel::UpdateChannel,
    /// Set when the process should exit to be restarted (update, rollback).
    restart: Notify,
    /// New trust is on disk: the link ends its session and reconnects.
    pub reload_trust: Notify,
    /// Renewal requests and answers between the renewal task and the link.
    pub trust: crate::trust::channel::TrustChannel,
    /// Receipts came in: retention may have work (see `jobs::retention`).
    pub retention: Notify,
    /// Why retention cannot free the space its policy asks for, if so.
    pub retention_blocked: watch::Sender<Option<String>>,
    /// The node's clock against the controller's (the link measures it).
    pub clock: watch::Sender<Option<crate::health::clock::Estimate>>,
    /// Health signals as last observed (the health job publishes them).
    pub health: watch::Sender<crate::health::HealthStatus>,
    /// Live listen frames on their way to the link.
    pub listen: ListenQueue,
    /// What the agent sees of the console (the console task publishes it).
    pub console: watch::Sender<Arc<crate::console::ConsoleView>>,
}

/// Frames of the live listen stream between the engine and the link: a
/// queue of [`LISTEN_QUEUE`] frames; a frame that finds it full is
/// dropped, never queued (a slow link costs listen frames, not latency).
#[derive(Debug)]
pub struct ListenQueue {
    tx: tokio::sync::mpsc::Sender<rakkr_protocol::ListenFrame>,
    /// One session at a time takes the frames.
    pub rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<rakkr_protocol::ListenFrame>>,
    /// Frames dropped because the queue was full.
    pub dropped: std::sync::atomic::AtomicU64,
}

/// Frames the listen queue holds (4 × at most 100 ms).
pub const LISTEN_QUEUE: usize = 4;

impl Default for ListenQueue {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(LISTEN_QUEUE);
        Self {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            dropped: Default::default(),
        }
    }
}

impl ListenQueue {
    /// Queues a frame, or drops it when the queue is full.
    pub fn offer(&self, frame: rakkr_protocol::ListenFrame) {
        if self.tx.try_send(frame).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    pub fn new(config: Config, outbox: Outbox, commands: CommandLog) -> Arc<Self> {
        Arc::new(Self {
            settings: watch::channel(Arc::new(config.clone())).0,
            outbox: Mutex::new(outbox),
            commands: Mutex::new(commands),
            serial: tokio::sync::Mutex::new(()),
            new_events: Notify::new(),
            status: watch::channel(LinkStatus::Starting).0,
            meter: watch::channel(None).0,
            recorder: std::sync::OnceLock::new(),
            sessions: watch::channel(0).0,
            update: Default::default(),
            restart: Notify::new(),
            reload_trust: Notify::new(),
            trust: Default::default(),
            retention: Notify::new(),
            retention_blocked: watch::channel(None).0,
            clock: watch::channel(None).0,
            health: watch::channel(Default::default()).0,
            listen: Default::default(),
            console: watch::channel(Arc::new(if config.console.enabled() {
                crate::console::ConsoleView {
                    state: "searching".into(),
                    ..Default::default()
                }
            } else {
                crate::console::ConsoleView::off()
            }))
            .0,
            config,
        })
    }

    /// The configuration in force now.
    pub fn live(&self) -> Arc<Config> {
        self.settings.borrow().clone()
    }

    /// Asks the daemon to stop cleanly and exit for a restart.
    pub fn request_restart(&self) {
        self.restart.notify_one();
    }

    pub async fn restart_requested(&self) {
        self.restart.notified().await;
    }

    pub fn resume(&self) -> rakkr_protocol::Resume {
        lock(&self.outbox).resume()
    }

    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<Event> {
        lock(&self.outbox).pending_after(after, limit)
    }

    pub fn pending_count(&self) -> usize {
        lock(&self.outbox).len()
    }

    /// Appends an event durably, then wakes the link. An event that would
    /// not fit in a frame is made to fit first (see `fit`): a large
    /// manifest goes ahead in parts; the event returned is `body`'s own.
    pub async fn emit(self: &Arc<Self>, body: EventBody) -> anyhow::Result<Event> {
        let me = self.clone();
        let event = tokio::task::spawn_blocking(move || {
            let mut outbox = lock(&me.outbox);
            let mut last = None;
            for b in crate::fit::event(body) {
                last = Some(outbox.push(b)?);
            }
            last.ok_or_else(|| anyhow::anyhow!("no event to queue"))
        })
        .await??;
        tracing::debug!(seq = event.seq, "event queued");
        self.new_events.notify_one();
        Ok(event)
    }

    /// The inventory as JSON (for Hello and the Inventory command), with
    /// the capture the engine holds: a device busy because of it stays
    /// listed with what it captures.
    pub async fn inventory_json(&self) -> anyhow::Result<String> {
        let held = match self.recorder.get() {
            Some(r) => r.status().await.ok().and_then(|s| s.held),
            None => None,
        };
        let config = self.live();
        let console = (**self.console.borrow()).clone();
        let json = tokio::task::spawn_blocking(move || {
            serde_json::to_string(&crate::inventory::build(
                &config,
                true,
                held.as_ref(),
                console,
            ))
        })
        .await??;
        Ok(json)
    }

    /// The controller holds every event up to `up_to`.
    pub async fn ack(self: &Arc<Self>, up_to: u64) -> anyhow::Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || lock(&me.outbox).ack(up_to)).await??;
        Ok(())
    }
}
