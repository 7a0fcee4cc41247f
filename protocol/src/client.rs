//! The agent's end of the link: connect, TLS, Hello → Welcome | Reject.
//! What happens after the handshake (commands, events, heartbeats) is driven
//! by the agent; this module gives it a framed, authenticated connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::frame::{FrameCodec, FrameError};
use crate::message::{AgentMsg, ControllerMsg, Hello, Reject, Welcome};

/// A framed, mutually authenticated connection as the agent sees it.
pub type AgentFramed = Framed<TlsStream<TcpStream>, FrameCodec<ControllerMsg, AgentMsg>>;

/// Where and how to reach the controller.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// The name the controller's certificate must carry.
    pub server_name: ServerName<'static>,
}

/// Why a connection attempt or session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("cannot connect to {address}: {cause}")]
    Connect {
        address: String,
        cause: std::io::Error,
    },
    #[error("TLS with {address} failed: {explanation}")]
    Tls {
        address: String,
        explanation: String,
    },
    #[error("{stage} timed out after {after:?}")]
    Timeout {
        stage: &'static str,
        after: Duration,
    },
    #[error("controller rejected the handshake: {}", .0.message)]
    Rejected(Reject),
    #[error("protocol violation by the peer: {0}; closing the connection")]
    Protocol(FrameError),
    #[error("link i/o failed: {0}")]
    Io(String),
    #[error("controller closed the connection {during}")]
    Closed { during: &'static str },
    #[error("unexpected {got} message {during}")]
    Unexpected {
        got: &'static str,
        during: &'static str,
    },
    #[error("peer silent for {0:?}: declared dead")]
    Dead(Duration),
    /// Our own message could not be encoded (too long, say): a defect of
    /// this side, never blamed on the peer.
    #[error("could not send our own message: {0}")]
    Send(FrameError),
}

impl LinkError {
    /// Classifies a read/write error of an established connection. TLS
    /// alerts arrive here too (in TLS 1.3 a refused client certificate is
    /// only reported on the first read after the handshake).
    /// Classifies an error sending a message: our encoder's refusals are
    /// ours; I/O and TLS errors are classified as for reads.
    pub fn from_send(err: FrameError, address: &str) -> Self {
        match err {
            FrameError::Io(_) => Self::from_frame(err, address),
            other => LinkError::Send(other),
        }
    }

    pub fn from_frame(err: FrameError, address: &str) -> Self {
        match err {
            FrameError::Io(io) => {
                let explanation = crate::tls::explain(&io);
                if explanation.starts_with("TLS error") || explanation.contains("(TLS: ") {
                    LinkError::Tls {
                        address: address.to_owned(),
                        explanation,
                    }
                } else {
                    LinkError::Io(io.to_string())
                }
            }
            other if other.is_protocol_violation() => LinkError::Protocol(other),
            other => LinkError::Io(other.to_string()),
        }
    }
}

impl ControllerMsg {
    /// The message's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ControllerMsg::Welcome(_) => "Welcome",
            ControllerMsg::Reject(_) => "Reject",
            ControllerMsg::Heartbeat => "Heartbeat",
            ControllerMsg::Command(_) => "Command",
            ControllerMsg::Ack(_) => "Ack",
            ControllerMsg::Goodbye(_) => "Goodbye",
            ControllerMsg::Chunk(_) => "Chunk",
            ControllerMsg::TransferFailed { .. } => "TransferFailed",
            ControllerMsg::Renewed { .. } => "Renewed",
            ControllerMsg::RenewRefused { .. } => "RenewRefused",
            ControllerMsg::RenewalOnly { .. } => "RenewalOnly",
            ControllerMsg::Enrolled { .. } => "Enrolled",
            ControllerMsg::EnrollRefused { .. } => "EnrollRefused",
            ControllerMsg::ReadFile(_) => "ReadFile",
            ControllerMsg::ClockReply(_) => "ClockReply",
        }
    }
}

impl AgentMsg {
    /// The message's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentMsg::Hello(_) => "Hello",
            AgentMsg::Heartbeat => "Heartbeat",
            AgentMsg::Event(_) => "Event",
            AgentMsg::Result(_) => "Result",
            AgentMsg::Meter(_) => "Meter",
            AgentMsg::Goodbye(_) => "Goodbye",
            AgentMsg::Fetch(_) => "Fetch",
            AgentMsg::Renew(_) => "Renew",
            AgentMsg::Enroll(_) => "Enroll",
            AgentMsg::FileChunk(_) => "FileChunk",
            AgentMsg::FileReadFailed(_) => "FileReadFailed",
            AgentMsg::ClockProbe { .. } => "ClockProbe",
            AgentMsg::Listen(_) => "Listen",
        }
    }
}

/// Connects, authenticates and shakes hands. `timeout` bounds each stage
/// (TCP connect, TLS handshake, Welcome).
pub async fn connect(
    endpoint: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    hello: Hello,
    timeout: Duration,
) -> Result<(AgentFramed, Welcome), LinkError> {
    match handshake(endpoint, tls, hello, timeout).await? {
        (framed, Handshake::Welcome(w)) => Ok((framed, w)),
        (_, Handshake::RenewalOnly(_)) => Err(LinkError::Unexpected {
            got: "RenewalOnly",
            during: "before Welcome",
        }),
    }
}

/// How the controller answered Hello.
#[derive(Debug)]
pub enum Handshake {
    Welcome(Welcome),
    /// The node's certificate expired within the controller's renewal
    /// grace: only renewal is served on this connection.
    RenewalOnly(String),
}

/// Enrolls: one [`Enroll`](crate::Enroll) on a connection where only the
/// controller is authenticated (`tls` from `tls::enroll_client_config`).
/// `Ok(Ok(chain_pem))`, or `Ok(Err(reason))` when the controller refused.
pub async fn enroll(
    endpoint: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    enroll: crate::Enroll,
    timeout: Duration,
) -> Result<Result<String, String>, LinkError> {
    let address = endpoint.address.as_str();
    let stream = open(endpoint, tls, timeout).await?;
    let mut framed: AgentFramed = Framed::new(stream, FrameCodec::default());
    let reply = ask(
        &mut framed,
        AgentMsg::Enroll(enroll),
        address,
        timeout,
        (
            "waiting for the enrollment answer",
            "before the enrollment answer",
        ),
    )
    .await?;
    match reply {
        ControllerMsg::Enrolled { chain_pem } => Ok(Ok(chain_pem)),
        ControllerMsg::EnrollRefused { message } => Ok(Err(message)),
        other => Err(LinkError::Unexpected {
            got: other.kind(),
            during: "enrollment",
        }),
    }
}

/// Sends `msg` and waits up to `timeout` for the controller's answer.
/// `(stage, during)` name that answer in a timeout and in a closed link.
async fn ask(
    framed: &mut AgentFramed,
    msg: AgentMsg,
    address: &str,
    timeout: Duration,
    (stage, during): (&'static str, &'static str),
) -> Result<ControllerMsg, LinkError> {
    framed
        .send(msg)
        .await
        .map_err(|e| LinkError::from_frame(e, address))?;
    let reply = tokio::time::timeout(timeout, framed.next())
        .await
        .map_err(|_| LinkError::Timeout {
            stage,
            after: timeout,
        })?;
    match reply {
        None => Err(LinkError::Closed { during }),
        Some(Err(e)) => Err(LinkError::from_frame(e, address)),
        Some(Ok(m)) => Ok(m),
    }
}

/// TCP then TLS to the controller, each bounded by `timeout`.
async fn open(
    endpoint: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, LinkError> {
    let address = endpoint.address.as_str();
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| LinkError::Timeout {
            stage: "TCP connect",
            after: timeout,
        })?
        .map_err(|cause| LinkError::Connect {
            address: address.to_owned(),
            cause,
        })?;
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(
        timeout,
        TlsConnector::from(tls).connect(endpoint.server_name.clone(), tcp),
    )
    .await
    .map_err(|_| LinkError::Timeout {
        stage: "TLS handshake",
        after: timeout,
    })?
    .map_err(|e| LinkError::Tls {
        address: address.to_owned(),
        explanation: crate::tls::explain(&e),
    })
    .and_then(|stream| {
        // NOTE: rustls lets a server that ignores ALPN through; a peer
        // that did not agree to speak rakkr-agent/1 is not our controller.
        if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN) {
            Ok(stream)
        } else {
            Err(LinkError::Tls {
                address: address.to_owned(),
                explanation: "the peer did not agree to the rakkr-agent/1 protocol (ALPN): it is not a Rakkr controller of this generation".into(),
            })
        }
    })
}

/// [`connect`], also accepting a renewal-only session.
pub async fn handshake(
    endpoint: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    hello: Hello,
    timeout: Duration,
) -> Result<(AgentFramed, Handshake), LinkError> {
    let address = endpoint.address.as_str();
    let stream = open(endpoint, tls, timeout).await?;
    // NOTE: a read buffer of several update chunks: a frame that straddles
    // the buffer's end is moved to its front once per fill, so a larger
    // buffer copies less (2 MiB, allocated once per connection).
    let mut framed = Framed::with_capacity(
        stream,
        FrameCodec::default(),
        4 * crate::message::MAX_CHUNK_LEN as usize,
    );
    let reply = ask(
        &mut framed,
        AgentMsg::Hello(hello),
        address,
        timeout,
        ("waiting for Welcome", "before Welcome"),
    )
    .await?;
    match reply {
        ControllerMsg::Welcome(w) => Ok((framed, Handshake::Welcome(w))),
        ControllerMsg::RenewalOnly { message } => Ok((framed, Handshake::RenewalOnly(message))),
        ControllerMsg::Reject(r) => Err(LinkError::Rejected(r)),
        other => Err(LinkError::Unexpected {
            got: other.kind(),
            during: "before Welcome",
        }),
    }
}
