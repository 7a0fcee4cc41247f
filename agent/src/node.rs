//! The running node's shared state and the actions on it: emit an event,
//! take an acknowledgement, execute a controller command. Owned by the
//! daemon; used by the link and the local control socket.
//!
//! File work (outbox, command log) runs on tokio's blocking pool so the
//! link's heartbeats never wait behind an fsync.

use std::sync::{Arc, Mutex, MutexGuard};

use rakkr_protocol::{
    Chunk, Command, CommandBody, CommandResult, Event, EventBody, FailureCode, Fetch, MeterFrame,
    Origin, Outcome, Reply,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};

use crate::commands::{CommandLog, failed};
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
    pub config: Config,
    outbox: Mutex<Outbox>,
    commands: Mutex<CommandLog>,
    /// Commands run one at a time (a repeated id waits for the first to
    /// finish, then gets its result), off the link loop.
    pub(crate) serial: tokio::sync::Mutex<()>,
    /// Signalled whenever an event is appended.
    pub new_events: Notify,
    pub status: watch::Sender<LinkStatus>,
    /// Latest meter frame (best effort, latest wins). Fed by capture.
    pub meter: watch::Sender<Option<MeterFrame>>,
    /// The recorder engine (set once the daemon has started it).
    pub recorder: std::sync::OnceLock<crate::recorder::Handle>,
    /// Bumped each time the link is welcomed (a new session).
    pub sessions: watch::Sender<u64>,
    /// Update transfer requests for the link to send (see update/transfer.rs).
    fetch_tx: mpsc::UnboundedSender<Fetch>,
    pub fetch_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Fetch>>,
    /// Where the link hands transfer chunks, while a transfer runs.
    chunks: Mutex<Option<mpsc::UnboundedSender<Result<Chunk, String>>>>,
    /// The update in progress: (version, sha256).
    update: Mutex<Option<(String, String)>>,
    /// Set when the process should exit to be restarted (update, rollback).
    restart: Notify,
    /// New trust is on disk: the link ends its session and reconnects.
    pub reload_trust: Notify,
    /// Renewal requests and answers between the renewal task and the link.
    pub trust: crate::trust::channel::TrustChannel,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    pub fn new(config: Config, outbox: Outbox, commands: CommandLog) -> Arc<Self> {
        let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            config,
            outbox: Mutex::new(outbox),
            commands: Mutex::new(commands),
            serial: tokio::sync::Mutex::new(()),
            new_events: Notify::new(),
            status: watch::channel(LinkStatus::Starting).0,
            meter: watch::channel(None).0,
            recorder: std::sync::OnceLock::new(),
            sessions: watch::channel(0).0,
            fetch_tx,
            fetch_rx: tokio::sync::Mutex::new(fetch_rx),
            chunks: Mutex::new(None),
            update: Mutex::new(None),
            restart: Notify::new(),
            reload_trust: Notify::new(),
            trust: Default::default(),
        })
    }

    /// Starts receiving transfer chunks from the link.
    pub fn open_transfer(&self) -> mpsc::UnboundedReceiver<Result<Chunk, String>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.chunks) = Some(tx);
        rx
    }

    pub fn close_transfer(&self) {
        *lock(&self.chunks) = None;
    }

    /// Queues a transfer request for the link.
    pub fn fetch(&self, f: Fetch) {
        let _ = self.fetch_tx.send(f);
    }

    /// Called by the link with a Chunk or a TransferFailed message.
    pub fn deliver(&self, c: Result<Chunk, String>) {
        if let Some(tx) = lock(&self.chunks).as_ref() {
            let _ = tx.send(c);
        }
    }

    pub fn update_active(&self) -> MutexGuard<'_, Option<(String, String)>> {
        lock(&self.update)
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

    /// The controller holds every event up to `up_to`.
    pub async fn ack(self: &Arc<Self>, up_to: u64) -> anyhow::Result<()> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || lock(&me.outbox).ack(up_to)).await??;
        Ok(())
    }

    /// Runs a command at most once per id. A command with a field over its
    /// limit is refused before anything else (and not remembered: the
    /// reply carries its id cut to the limit).
    pub async fn execute(self: &Arc<Self>, cmd: Command) -> CommandResult {
        if let Err(e) = cmd.check_limits() {
            let id =
                rakkr_protocol::limits::truncated(&cmd.id, rakkr_protocol::limits::COMMAND_ID_MAX);
            tracing::warn!(id = %id, error = %e, "command refused: over a limit");
            return failed(id, FailureCode::InvalidArgument, e.to_string());
        }
        let _one_at_a_time = self.serial.lock().await;
        if let Some(first) = lock(&self.commands).get(&cmd.id).cloned() {
            tracing::info!(id = %cmd.id, "repeated command id: returning the first result");
            return first;
        }
        let result = crate::fit::reply(self.act(&cmd).await);
        let me = self.clone();
        let to_store = result.clone();
        match tokio::task::spawn_blocking(move || lock(&me.commands).record(to_store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(id = %cmd.id, error = format!("{e:#}"), "could not record command result")
            }
            Err(e) => tracing::error!(id = %cmd.id, error = %e, "could not record command result"),
        }
        result
    }

    async fn update(
        self: &Arc<Self>,
        id: &str,
        offer: &rakkr_protocol::UpdateOffer,
        signed: Option<crate::update::task::Signed<'_>>,
    ) -> CommandResult {
        match crate::update::task::accept(self, offer, signed).await {
            Ok(ack) => {
                tracing::info!(%id, version = %offer.version, signed = signed.is_some(), ?ack, "update accepted");
                CommandResult {
                    id: id.to_owned(),
                    outcome: Outcome::Done(Reply::Update(ack)),
                }
            }
            Err((code, message)) => {
                tracing::warn!(%id, version = %offer.version, %message, "update refused");
                failed(id, code, message)
            }
        }
    }

    async fn act(self: &Arc<Self>, cmd: &Command) -> CommandResult {
        let done = |reply| CommandResult {
            id: cmd.id.clone(),
            outcome: Outcome::Done(reply),
        };
        match &cmd.body {
            CommandBody::Inventory => {
                let config = self.config.clone();
                match tokio::task::spawn_blocking(move || {
                    serde_json::to_string(&crate::inventory::build(&config, true))
                })
                .await
                {
                    Ok(Ok(json)) => done(Reply::Inventory { json }),
                    Ok(Err(e)) => failed(&cmd.id, FailureCode::Internal, e.to_string()),
                    Err(e) => failed(&cmd.id, FailureCode::Internal, e.to_string()),
                }
            }
            CommandBody::Annotate { text } => {
                if text.trim().is_empty() || text.len() > MAX_NOTE_LEN {
                    return failed(
                        &cmd.id,
                        FailureCode::InvalidArgument,
                        format!("note must be 1..={MAX_NOTE_LEN} bytes"),
                    );
                }
                tracing::info!(id = %cmd.id, note = %text, "operator note from the controller");
                let origin = Origin::Controller {
                    command_id: cmd.id.clone(),
                };
                match self
                    .emit(EventBody::Annotated {
                        text: text.clone(),
                        origin,
                    })
                    .await
                {
                    Ok(ev) => done(Reply::Annotated { seq: ev.seq }),
                    Err(e) => failed(&cmd.id, FailureCode::Internal, format!("{e:#}")),
                }
            }
            CommandBody::Update(offer) => self.update(&cmd.id, offer, None).await,
            CommandBody::UpdateSigned(s) => {
                let signed = crate::update::task::Signed {
                    manifest: &s.release_manifest,
                    signature: &s.signature,
                };
                self.update(&cmd.id, &s.offer, Some(signed)).await
            }
            CommandBody::RotateTrust => {
                tracing::info!(id = %cmd.id, "the controller asks for a certificate renewal");
                self.trust.rotate.notify_one();
                done(Reply::RenewalStarted)
            }
            CommandBody::TrustBundle { cas_pem } => {
                let me = self.clone();
                let cas_pem = cas_pem.clone();
                let applied = tokio::task::spawn_blocking(move || {
                    let endpoint = me
                        .config
                        .controller
                        .endpoint
                        .as_ref()
                        .ok_or("no controller configured")?;
                    let name = rakkr_protocol::tls::server_name(&endpoint.server_name)
                        .map_err(|e| e.to_string())?;
                    crate::trust::bundle::apply(
                        &me.config.trust,
                        &cas_pem,
                        &me.trust.controller_chain(),
                        &name,
                    )
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match applied {
                    Ok(ca_sha256) => {
                        tracing::info!(id = %cmd.id, cas = ?ca_sha256, "new CA bundle installed");
                        if let Err(e) = self
                            .emit(EventBody::TrustBundleChanged {
                                ca_sha256: ca_sha256.clone(),
                            })
                            .await
                        {
                            tracing::error!(
                                error = format!("{e:#}"),
                                "could not record the bundle change"
                            );
                        }
                        done(Reply::TrustBundle { ca_sha256 })
                    }
                    Err(message) => {
                        tracing::warn!(id = %cmd.id, %message, "CA bundle refused");
                        failed(&cmd.id, FailureCode::InvalidArgument, message)
                    }
                }
            }
            CommandBody::StartTake(_)
            | CommandBody::StopTake { .. }
            | CommandBody::Mark { .. }
            | CommandBody::TakeStatus => match self.recorder.get() {
                None => failed(
                    &cmd.id,
                    FailureCode::Busy,
                    "the recorder is not running yet",
                ),
                Some(rec) => match take_command(rec, &cmd.body).await {
                    Ok(reply) => {
                        tracing::info!(id = %cmd.id, "take command done");
                        done(reply)
                    }
                    Err(r) => {
                        tracing::warn!(id = %cmd.id, error = %r, "take command refused");
                        failed(&cmd.id, r.code, r.message)
                    }
                },
            },
        }
    }
}

/// Runs a take command on the recorder.
async fn take_command(
    rec: &crate::recorder::Handle,
    body: &CommandBody,
) -> Result<Reply, crate::recorder::Refusal> {
    use std::time::Duration;
    Ok(match body {
        CommandBody::StartTake(st) => {
            let (take, already_running) = rec
                .start(crate::recorder::StartRequest {
                    take_id: st.take_id.clone(),
                    channels: (st.channels > 0).then_some(st.channels),
                    container: st.format.map(crate::recorder::container),
                    segment: (st.segment_seconds > 0)
                        .then(|| Duration::from_secs(u64::from(st.segment_seconds))),
                    pre_roll: Duration::from_millis(u64::from(st.pre_roll_ms)),
                    frames: None,
                    output: None,
                })
                .await?;
            Reply::Take {
                take,
                already_running,
            }
        }
        CommandBody::StopTake { take_id } => {
            let ending = crate::record::take::Ending::asked("controller");
            let (take, manifest) = rec.stop(take_id.clone(), ending).await?;
            Reply::TakeStopped {
                take,
                manifest_json: crate::recorder::events::manifest_json(&manifest),
            }
        }
        CommandBody::Mark { label } => Reply::Marked {
            at_sample: rec.mark(label.clone()).await?,
        },
        _ => {
            let st = rec.status().await?;
            Reply::TakeStatus {
                take: st.take,
                device: if st.device.is_empty() {
                    st.error.unwrap_or_default()
                } else {
                    st.device
                },
                device_ok: st.device_ok,
            }
        }
    })
}
