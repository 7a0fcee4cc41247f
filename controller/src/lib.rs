//! The reference controller: the server end of the link as a library. Tests,
//! benchmarks and the `rakkr-controller` binary drive agents with it. Also
//! its server TLS configuration ([`tls`], with the expired-certificate
//! grace for renewal), a simulated console for demos and tests ([`sim`]),
//! and the demo ([`demo`]). The node binary never links any of it.
//!
//! Threads: one tokio task accepts connections; one task per connection runs
//! its session ([`session`]). Shared state (connected nodes, pending command
//! results, the event store) sits behind short-held std mutexes; observers
//! follow everything through a broadcast of [`ControllerEvent`]s.

pub mod console;
mod counting;
pub mod demo;
pub mod grace;
pub mod listen;
pub mod renewal;
mod session;
pub mod sim;
pub mod store;
pub mod takes;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use counting::Counters;
pub use store::{Accepted, EventStore, StoredEvent};

use rakkr_protocol::message::{
    Command, CommandBody, CommandResult, ControllerMsg, Event, GoodbyeReason, Hello, MeterFrame,
    Reject, VersionRange,
};

/// How the controller listens and behaves.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    /// Protocol versions offered (normally [`rakkr_protocol::version::SUPPORTED`]).
    pub versions: VersionRange,
    /// Heartbeat interval announced in Welcome.
    pub heartbeat: Duration,
    /// Bound on TLS handshake and on waiting for Hello.
    pub handshake_timeout: Duration,
    /// Where node event logs are kept; `None` keeps them in memory.
    pub store: Option<PathBuf>,
    /// Signs renewal requests; `None`: renewals are refused.
    pub renewal: Option<Arc<dyn Signer>>,
    /// Where takes pulled from nodes go (`<takes>/<node>/<take>/`); `None`:
    /// takes stay on the nodes (see [`takes`]).
    pub takes: Option<PathBuf>,
    /// Checks an enrollment token this controller did not issue (the
    /// bridge: a Rakkr node token, asked of the Rakkr controller); `None`:
    /// only tokens from [`ControllerHandle::add_enroll_token`].
    pub token_check: Option<Arc<dyn TokenCheck>>,
    /// Which takes are pulled into `takes`, and who sends the receipts.
    pub pull: PullPolicy,
}

/// Which takes the puller fetches and when a node hears they are safe.
#[derive(Debug, Clone, Default)]
pub struct PullPolicy {
    /// Only takes whose id starts with this (empty: every take).
    pub take_prefix: String,
    /// `false` (the reference controller): a receipt as soon as a file is
    /// stored and verified. `true` (the bridge): files are stored and
    /// verified ([`ControllerEvent::TakeFileStored`]), and the owner sends
    /// the `Receipt` command once the audio is safe further on; take
    /// manifests are not pulled.
    pub deferred_receipts: bool,
}

/// The answer of a [`TokenCheck`].
pub type TokenVerdict<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Checks an enrollment token against an authority outside this
/// controller. `Ok(())`: `token` is `node`'s, and the node may have its
/// first certificate; `Err(why)`: refused, with a reason for the node.
pub trait TokenCheck: Send + Sync + std::fmt::Debug {
    fn check<'a>(&'a self, node: &'a str, token: &'a str) -> TokenVerdict<'a>;
}

impl ControllerConfig {
    pub fn new(listen: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            listen,
            tls,
            versions: rakkr_protocol::version::SUPPORTED,
            heartbeat: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            store: None,
            renewal: None,
            takes: None,
            token_check: None,
            pull: PullPolicy::default(),
        }
    }
}

/// Issues node certificates for renewal requests (the reference
/// controller's CA lives in `renewal`, behind the `devcerts` feature).
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// A certificate chain (PEM, leaf first) for the key in `csr_der`,
    /// for the node certified as `node`; or why not.
    fn renew(&self, node: &str, csr_der: &[u8]) -> Result<String, String>;
}

/// Everything observable about the controller, in order of occurrence.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ControllerEvent {
    HandshakeFailed {
        peer: SocketAddr,
        error: String,
    },
    Rejected {
        node: String,
        peer: SocketAddr,
        reject: Reject,
    },
    Connected {
        node: String,
        peer: SocketAddr,
        version: u16,
        /// SHA-256 of the certificate the agent presented (hex).
        cert_sha256: String,
        hello: Box<Hello>,
    },
    Event {
        node: String,
        event: Event,
        duplicate: bool,
    },
    Result {
        node: String,
        result: CommandResult,
    },
    Heartbeat {
        node: String,
    },
    Meter {
        node: String,
        frame: MeterFrame,
    },
    /// A frame of a node's live listen stream, and when it arrived (this
    /// controller's clock, ms since the epoch).
    Listen {
        node: String,
        frame: rakkr_protocol::ListenFrame,
        received_at_ms: u64,
    },
    ProtocolError {
        node: String,
        error: String,
    },
    /// A node enrolled with a token and got its first certificate.
    Enrolled {
        node: String,
        sha256: String,
    },
    /// An enrollment was refused.
    EnrollRefused {
        peer: SocketAddr,
        reason: String,
    },
    /// A take's file arrived whole (`resumed_at`: the bytes already held
    /// from an earlier attempt); `verified`: its SHA-256 is the node's.
    TakeFileStored {
        node: String,
        take_id: String,
        file: String,
        bytes: u64,
        resumed_at: u64,
        sha256: String,
        verified: bool,
    },
    /// A receipt was answered: files now received, and refused.
    TakeReceipt {
        node: String,
        take_id: String,
        accepted: Vec<String>,
        refused: Vec<String>,
    },
    /// A node with a recently expired certificate was let in to renew only.
    RenewalOnly {
        node: String,
    },
    /// A renewal request was answered with a certificate (`sha256` hex).
    CertificateIssued {
        node: String,
        sha256: String,
    },
    Disconnected {
        node: String,
        reason: String,
    },
    /// A node fetched part of a published artifact.
    Fetched {
        node: String,
        transfer_id: String,
        offset: u64,
        len: u64,
    },
}

/// An artifact the controller serves to agents that [`Fetch`](rakkr_protocol::Fetch) it.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub bytes: Arc<Vec<u8>>,
    /// Fault injector: the first fetch at or past this offset closes the
    /// connection instead of being answered (a link cut mid-transfer).
    pub cut_at: Option<u64>,
}

/// A connected node as the controller sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub peer: SocketAddr,
    pub version: u16,
    pub hello: Hello,
    pub heartbeats: u64,
    /// Bytes on the wire (TLS records included) of the current connection.
    pub counters: Arc<Counters>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    #[error("node {0} is not connected")]
    NotConnected(String),
    #[error("node {node} did not answer command {id} within {after:?}")]
    Timeout {
        node: String,
        id: String,
        after: Duration,
    },
    #[error("connection to node {0} closed before the command was sent")]
    Closed(String),
    #[error(
        "node {node} speaks protocol {version}; {what} needs {needs} or later (update the agent)"
    )]
    TooOld {
        node: String,
        version: u16,
        what: &'static str,
        needs: u16,
    },
}

pub(crate) enum Outgoing {
    Msg(ControllerMsg),
    Raw(Vec<u8>),
    Close(GoodbyeReason),
}

pub(crate) struct NodeEntry {
    pub(crate) info: NodeInfo,
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) session: u64,
}

pub(crate) struct Shared {
    pub(crate) config: ControllerConfig,
    pub(crate) store: Mutex<EventStore>,
    pub(crate) nodes: Mutex<HashMap<String, NodeEntry>>,
    pub(crate) pending: Mutex<HashMap<String, Vec<oneshot::Sender<CommandResult>>>>,
    pub(crate) events: broadcast::Sender<ControllerEvent>,
    pub(crate) artifacts: Mutex<HashMap<String, Artifact>>,
    /// SHA-256 (hex) of node certificates refused at the handshake.
    pub(crate) revoked: Mutex<std::collections::HashSet<String>>,
    /// The TLS configuration new connections get (swappable: CA rollover).
    pub(crate) tls: Mutex<Arc<rustls::ServerConfig>>,
    /// Who signs renewals now (starts as `config.renewal`).
    pub(crate) renewal: Mutex<Option<Arc<dyn Signer>>>,
    /// One-time enrollment tokens: token → (node id, valid until).
    pub(crate) tokens: Mutex<HashMap<String, (String, std::time::SystemTime)>>,
    /// Each node's take puller: (session, where its file replies go).
    pub(crate) file_replies: Mutex<HashMap<String, (u64, mpsc::Sender<rakkr_protocol::AgentMsg>)>>,
    /// Each session's puller, poked when its node reports a take event.
    /// NOTE: not the broadcast: with a thousand nodes every puller woke
    /// for every node's meter frame (most of a core in the fleet bench).
    pub(crate) pull_pokes: Mutex<HashMap<String, (u64, Arc<tokio::sync::Notify>)>>,
    /// Bytes of take files received (every `FileChunk`, repeats included).
    pub(crate) take_bytes: std::sync::atomic::AtomicU64,
    /// Milliseconds added to this controller's clock when it answers a
    /// clock probe (a test knob: a controller whose clock is off).
    pub(crate) clock_offset_ms: std::sync::atomic::AtomicI64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking session must not take the whole controller down with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn emit(&self, ev: ControllerEvent) {
        let _ = self.events.send(ev);
    }
}

/// A running controller. Dropping it does not stop it; call [`Controller::shutdown`].
#[derive(Debug)]
pub struct Controller {
    handle: ControllerHandle,
    local_addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A cheap, cloneable handle to drive a running controller.
#[derive(Clone)]
pub struct ControllerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle").finish_non_exhaustive()
    }
}

impl Controller {
    /// Binds the listener and starts accepting agents.
    pub async fn start(config: ControllerConfig) -> std::io::Result<Self> {
        let store = match &config.store {
            Some(dir) => EventStore::open(dir)?,
            None => EventStore::memory(),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(8192);
        let tls = config.tls.clone();
        let renewal = config.renewal.clone();
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            nodes: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            events,
            artifacts: Mutex::new(HashMap::new()),
            revoked: Mutex::new(std::collections::HashSet::new()),
            tls: Mutex::new(tls),
            renewal: Mutex::new(renewal),
            tokens: Mutex::new(HashMap::new()),
            file_replies: Mutex::new(HashMap::new()),
            pull_pokes: Mutex::new(HashMap::new()),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            take_bytes: Default::default(),
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        {
            let (shared, cancel, tracker2) = (shared.clone(), cancel.clone(), tracker.clone());
            tracker.spawn(async move {
                let mut next_session = 0u64;
                loop {
                    let accepted = tokio::select! {
                        _ = cancel.cancelled() => break,
                        a = listener.accept() => a,
                    };
                    match accepted {
                        Ok((tcp, peer)) => {
                            next_session += 1;
                            let acceptor =
                                tokio_rustls::TlsAcceptor::from(lock(&shared.tls).clone());
                            tracker2.spawn(session::run(
                                shared.clone(),
                                acceptor.clone(),
                                tcp,
                                peer,
                                next_session,
                                cancel.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        tracing::info!(%local_addr, "controller listening");
        Ok(Self {
            handle: ControllerHandle { shared },
            local_addr,
            cancel,
            tracker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> ControllerHandle {
        self.handle.clone()
    }

    /// Stops at once, like a crash: connections are dropped without a
    /// Goodbye. Returns when every task has ended and the port is free.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl ControllerHandle {
    /// New connections get this TLS configuration (for example a
    /// controller certificate from a new CA); sessions already up keep theirs.
    pub fn set_tls(&self, tls: Arc<rustls::ServerConfig>) {
        *lock(&self.shared.tls) = tls;
    }

    /// Registers a one-time enrollment token for `node_id`, valid for
    /// `ttl` (enrollment needs a TLS configuration that allows it and a
    /// signer, see [`ControllerHandle::set_renewal`]).
    pub fn add_enroll_token(&self, token: &str, node_id: &str, ttl: Duration) {
        lock(&self.shared.tokens).insert(
            token.to_owned(),
            (node_id.to_owned(), std::time::SystemTime::now() + ttl),
        );
    }

    /// Signs renewal requests with `signer` from now on (`None`: refuse).
    pub fn set_renewal(&self, signer: Option<Arc<dyn Signer>>) {
        *lock(&self.shared.renewal) = signer;
    }

    /// Answers clock probes as if this controller's clock were `ms`
    /// milliseconds ahead (negative: behind) of the system clock.
    pub fn set_clock_offset_ms(&self, ms: i64) {
        self.shared
            .clock_offset_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses the node certificate with this SHA-256 (hex) from now on.
    pub fn revoke(&self, cert_sha256: &str) {
        lock(&self.shared.revoked).insert(cert_sha256.to_owned());
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ControllerEvent> {
        self.shared.events.subscribe()
    }

    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut v: Vec<_> = lock(&self.shared.nodes)
            .values()
            .map(|e| e.info.clone())
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    pub fn node(&self, node: &str) -> Option<NodeInfo> {
        lock(&self.shared.nodes).get(node).map(|e| e.info.clone())
    }

    fn sender(&self, node: &str) -> Result<mpsc::Sender<Outgoing>, ControllerError> {
        lock(&self.shared.nodes)
            .get(node)
            .map(|e| e.tx.clone())
            .ok_or_else(|| ControllerError::NotConnected(node.to_owned()))
    }

    /// Sends a command with a fresh random id and waits for its result.
    pub async fn command(
        &self,
        node: &str,
        body: CommandBody,
        timeout: Duration,
    ) -> Result<CommandResult, ControllerError> {
        let id = format!("cmd-{:016x}", fastrand::u64(..));
        self.command_with_id(node, &id, body, timeout).await
    }

    /// Sends a command with the given id (resending an id is how a
    /// controller retries safely) and waits for its result.
    pub async fn command_with_id(
        &self,
        node: &str,
        id: &str,
        body: CommandBody,
        timeout: Duration,
    ) -> Result<CommandResult, ControllerError> {
        // NOTE: a command an agent's protocol version lacks would not
        // decode there: refused here instead.
        let needs = match body {
            CommandBody::Configure(_) => {
                Some(("pushed configuration", rakkr_protocol::version::CONFIG))
            }
            CommandBody::StartTakeWith(_) | CommandBody::RunningTakes => {
                Some(("several takes at once", rakkr_protocol::version::TAKES))
            }
            _ => None,
        };
        if let Some((what, needs)) = needs
            && let Some(info) = self.node(node)
            && info.version < needs
        {
            return Err(ControllerError::TooOld {
                node: node.to_owned(),
                version: info.version,
                what,
                needs,
            });
        }
        let tx = self.sender(node)?;
        let (done, wait) = oneshot::channel();
        lock(&self.shared.pending)
            .entry(id.to_owned())
            .or_default()
            .push(done);
        let cmd = ControllerMsg::Command(Command {
            id: id.to_owned(),
            body,
        });
        tx.send(Outgoing::Msg(cmd))
            .await
            .map_err(|_| ControllerError::Closed(node.to_owned()))?;
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(result)) => Ok(result),
            _ => Err(ControllerError::Timeout {
                node: node.to_owned(),
                id: id.to_owned(),
                after: timeout,
            }),
        }
    }

    /// Writes raw bytes to a node's connection, bypassing the codec: a fault
    /// injector for malformed, truncated and oversize frames.
    pub async fn inject_raw(&self, node: &str, bytes: Vec<u8>) -> Result<(), ControllerError> {
        self.sender(node)?
            .send(Outgoing::Raw(bytes))
            .await
            .map_err(|_| ControllerError::Closed(node.to_owned()))
    }

    /// Closes a node's connection with a Goodbye.
    pub async fn disconnect(&self, node: &str) -> Result<(), ControllerError> {
        self.sender(node)?
            .send(Outgoing::Close(GoodbyeReason::Shutdown))
            .await
            .map_err(|_| ControllerError::Closed(node.to_owned()))
    }

    /// Serves `artifact` under `transfer_id` to any node that fetches it
    /// (an [`UpdateSource::Stream`](rakkr_protocol::UpdateSource) names it).
    pub fn publish_artifact(&self, transfer_id: &str, artifact: Artifact) {
        lock(&self.shared.artifacts).insert(transfer_id.to_owned(), artifact);
    }

    /// Bytes of take files received so far, repeats included (what a
    /// resumed transfer sent twice shows here).
    pub fn take_bytes_received(&self) -> u64 {
        self.shared
            .take_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every event stored for `node` (persisted stores only).
    pub fn event_log(&self, node: &str) -> std::io::Result<Vec<StoredEvent>> {
        lock(&self.shared.store).read_log(node)
    }
}
