//! The Rakkr agent ⇄ controller wire contract.
//!
//! - [`frame`]: length-prefixed postcard frames with a hard size limit.
//! - [`message`]: every message, append-only (see `PROTOCOL.md`).
//! - [`version`]: protocol version negotiation.
//! - [`tls`]: mutual TLS 1.3 configuration for both ends.
//! - [`client`]: the agent's end of the handshake.
//! - [`health`]: health signals and the clock probe.
//! - [`listen`]: the live listen stream.
//! - [`liveness`]: heartbeat and dead-peer rules shared by both ends.
//! - [`settings`]: node configuration pushed by the controller.
//! - [`takes`]: several takes at once from one capture.
//! - [`console`]: the console a node is wired to (identity, names).
//!
//! `PROTOCOL.md` beside this crate is the normative specification.

pub mod calver;
pub mod client;
pub mod console;
pub mod frame;
pub mod fsutil;
pub mod health;
pub mod limits;
pub mod listen;
pub mod liveness;
pub mod message;
pub mod settings;
pub mod takes;
pub mod tls;
pub mod version;

pub use console::{ConsoleEvent, ConsoleIdentity, TakeAt};
pub use frame::{FrameCodec, FrameError, MAX_FRAME_LEN};
pub use health::{ClockReply, HealthEvent, HealthSignal, Severity};
pub use listen::{ListenFrame, ListenRequest, Listening};
pub use message::*;
pub use settings::{ConfigApplied, ConfigPush, Reopen};
pub use takes::{RunningTake, TakeRequest};
pub use tls::ALPN;
