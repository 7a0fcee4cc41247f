//! The local control socket `<state>/agent.sock` (mode 0600): how the CLI on
//! the node talks to the running daemon. One JSON request per line, one JSON
//! reply per line. Also the "is a daemon already running here?" lock.
//!
//! NOTE: the socket is private from its first moment: it is bound inside a
//! fresh 0700 directory, made 0600, and only then renamed into place (a
//! socket bound in the open and chmod'ed after can be connected to in
//! between, whatever the umask). Every connection's peer credentials
//! (SO_PEERCRED) are checked too: root or the agent's own user only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rakkr_protocol::{EventBody, Origin};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::node::{LinkStatus, MAX_NOTE_LEN, Node};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "camelCase")]
pub enum Request {
    Status,
    Annotate {
        text: String,
    },
    /// Streams every new meter frame (`capture.meter_hz`, default 10 Hz) until the client hangs up.
    Meter,
    /// Stop cleanly and exit to be restarted (after `update apply`/`rollback`).
    Restart,
    /// New trust was installed: check it loads, then reconnect with it.
    ReloadTrust,
    /// Renew the node certificate now (over the link).
    RotateTrust,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReply {
    pub pid: u32,
    pub version: String,
    pub node_id: Option<String>,
    pub link: LinkStatus,
    pub pending_events: usize,
    /// The take recording now, if any (the oldest, when several do).
    #[serde(default)]
    pub recording: Option<String>,
    /// Every take recording, oldest first.
    #[serde(default)]
    pub takes: Vec<rakkr_protocol::RunningTake>,
    /// Why retention cannot free the space its policy asks for, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_blocked: Option<String>,
    /// Health signals, the clock against the controller's, its sync state.
    #[serde(default)]
    pub health: crate::health::HealthStatus,
    /// The live listen stream, if the controller listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenStatus>,
    /// The capture device this agent holds open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::inventory::audio::Held>,
    /// Every setting in force and where it comes from.
    #[serde(default)]
    pub config: crate::config::origins::ConfigStatus,
    /// What the agent sees of the console (see `console/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<crate::console::ConsoleView>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenStatus {
    pub channels: Vec<u16>,
    pub rate: u32,
    pub frame_samples: u32,
    /// Frames dropped so far because the link was slower than the stream.
    pub dropped: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "camelCase")]
pub enum Reply {
    Status(Box<StatusReply>),
    Annotated { seq: u64 },
    Meter(rakkr_protocol::MeterFrame),
    Restarting,
    TrustReloaded { node_id: String },
    RenewalStarted,
    Error { message: String },
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.sock")
}

/// Binds the socket; fails if another daemon answers on it. A stale socket
/// from a crashed daemon is replaced.
pub async fn bind(state_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket_path(state_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            bail!(
                "another agent is already running with state directory {} (its control socket {} answers)",
                state_dir.display(),
                path.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = state_dir.join(format!(".agent.sock.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    let bound = (|| {
        let inner = private.join("agent.sock");
        let listener = UnixListener::bind(&inner)
            .with_context(|| format!("binding control socket {}", inner.display()))?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", inner.display()))?;
        std::fs::rename(&inner, &path)
            .with_context(|| format!("moving the control socket to {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Whether a control connection may talk to the daemon: root, or the
/// user the agent runs as. Others are refused and logged.
fn allowed(stream: &UnixStream) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(c) if c.uid() == 0 || c.uid() == me => Ok(()),
        Ok(c) => Err(format!(
            "uid {} (pid {}) is neither root nor the agent's user (uid {me})",
            c.uid(),
            c.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
        )),
        Err(e) => Err(format!("its credentials could not be read: {e}")),
    }
}

pub async fn serve(listener: UnixListener, node: Arc<Node>, cancel: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                if let Err(who) = allowed(&stream) {
                    tracing::warn!(peer = %who, "control connection refused");
                    tokio::spawn(refuse(stream, who));
                    continue;
                }
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, node).await {
                        tracing::debug!(error = format!("{e:#}"), "control connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if let Ok(addr) = listener.local_addr()
        && let Some(p) = addr.as_pathname()
    {
        let _ = std::fs::remove_file(p);
    }
}

/// Tells a refused peer why (after its request line, so that it is
/// listening), then hangs up. Nothing it sent is acted on.
async fn refuse(stream: UnixStream, who: String) {
    let (r, mut stream) = stream.into_split();
    let mut line = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        BufReader::new(r.take(64 * 1024)).read_line(&mut line),
    )
    .await;
    let reply = Reply::Error {
        message: format!("control connection refused: {who}"),
    };
    if let Ok(mut line) = serde_json::to_vec(&reply) {
        line.push(b'\n');
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
    }
}

async fn handle(stream: UnixStream, node: Arc<Node>) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r.take(64 * 1024)).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Meter) => return stream_meters(&mut w, &node).await,
            Err(e) => Reply::Error {
                message: format!("bad request: {e}"),
            },
            Ok(Request::Status) => {
                let engine = match node.recorder.get() {
                    Some(rec) => rec.status().await.ok(),
                    None => None,
                };
                let recording = engine
                    .as_ref()
                    .and_then(|s| s.take.as_ref())
                    .map(|t| t.take_id.clone());
                let capture = engine.as_ref().and_then(|s| s.held.clone());
                let takes = engine.as_ref().map(|s| s.takes.clone()).unwrap_or_default();
                let listen = engine.and_then(|s| s.listening).map(|l| ListenStatus {
                    channels: l.channels,
                    rate: l.rate,
                    frame_samples: l.frame_samples,
                    dropped: node
                        .listen
                        .dropped
                        .load(std::sync::atomic::Ordering::Relaxed),
                });
                Reply::Status(Box::new(StatusReply {
                    pid: std::process::id(),
                    version: crate::build_info::VERSION.into(),
                    node_id: node.config.node.id.clone(),
                    link: node.status.borrow().clone(),
                    pending_events: node.pending_count(),
                    recording,
                    takes,
                    retention_blocked: node.retention_blocked.borrow().clone(),
                    health: node.health.borrow().clone(),
                    listen,
                    capture,
                    config: node.live().status(),
                    console: Some((**node.console.borrow()).clone()),
                }))
            }
            Ok(Request::ReloadTrust) => match crate::trust::load(&node.config.trust) {
                Ok(loaded) => {
                    tracing::info!(node = %loaded.node_id, "new trust installed; reconnecting with it");
                    node.reload_trust.notify_one();
                    node.trust.installed.send_modify(|n| *n += 1);
                    Reply::TrustReloaded {
                        node_id: loaded.node_id,
                    }
                }
                Err(e) => Reply::Error {
                    message: format!("{e:#}"),
                },
            },
            Ok(Request::RotateTrust) => {
                tracing::info!("certificate renewal asked for on the control socket");
                node.trust.rotate.notify_one();
                Reply::RenewalStarted
            }
            Ok(Request::Restart) => {
                tracing::info!("restart asked for on the control socket");
                node.request_restart();
                Reply::Restarting
            }
            Ok(Request::Annotate { text })
                if text.trim().is_empty() || text.len() > MAX_NOTE_LEN =>
            {
                Reply::Error {
                    message: format!("note must be 1..={MAX_NOTE_LEN} bytes"),
                }
            }
            Ok(Request::Annotate { text }) => {
                tracing::info!(note = %text, "operator note from the local CLI");
                match node
                    .emit(EventBody::Annotated {
                        text,
                        origin: Origin::Local,
                    })
                    .await
                {
                    Ok(ev) => Reply::Annotated { seq: ev.seq },
                    Err(e) => Reply::Error {
                        message: format!("{e:#}"),
                    },
                }
            }
        };
        let mut out = serde_json::to_vec(&reply)?;
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}

/// Writes each new meter frame as a reply line until the client goes away.
async fn stream_meters(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    node: &Node,
) -> anyhow::Result<()> {
    let mut rx = node.meter.subscribe();
    loop {
        let frame = rx.borrow_and_update().clone();
        if let Some(f) = frame {
            let mut out = serde_json::to_vec(&Reply::Meter(f))?;
            out.push(b'\n');
            w.write_all(&out).await?;
        }
        if rx.changed().await.is_err() {
            return Ok(());
        }
    }
}

/// Opens a stream of replies for `req` (CLI side, e.g. `Meter`).
pub fn stream(
    state_dir: &Path,
    req: &Request,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Reply>>> {
    use std::io::{BufRead, Write};
    let path = socket_path(state_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no running agent answers on {} (is the service running with this state directory?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    Ok(std::io::BufReader::new(s).lines().map(|l| {
        let l = l.context("reading from the agent")?;
        serde_json::from_str(&l).context("parsing the agent's reply")
    }))
}

/// Sends one request to the running daemon (CLI side).
pub fn request(state_dir: &Path, req: &Request) -> anyhow::Result<Reply> {
    stream(state_dir, req)?
        .next()
        .context("the agent closed the connection without a reply")?
}
