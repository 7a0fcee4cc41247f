//! The console the node is wired to, over the network: who it is, what
//! its channels are called, which of them the USB card carries.
//!
//! - `session.rs`: one console's conversation without I/O: which
//!   datagrams are believed, what they change, the view.
//! - `targets.rs`: where to ask (the configured address, or discovery).
//! - `probe.rs`: a one-shot ask within a budget (`--print-inventory`,
//!   `console` without a running agent).
//! - `neighbour.rs`: the console's MAC from the node's ARP table.
//!
//! The daemon's task that drives it is `jobs/console.rs` (tokio, UDP):
//! asks, listens, reports found/lost/back/swapped/firmware and renames,
//! publishes the view on `Node::console`.
//!
//! Threads: the task runs on the daemon's runtime and never touches the
//! engine's thread but through its request channel (a rename's position
//! in each take, like a mark); the engine reads the published view when a
//! take starts. Nothing here is on the audio path: a console that is off,
//! rebooting or absent changes names, never capture.

pub mod neighbour;
pub mod probe;
pub mod session;
pub mod targets;

use serde::{Deserialize, Serialize};

/// What the agent sees of the console now (inventory `console`, `console
/// --json`, `status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleView {
    /// `off` (not configured), `searching`, `found`, `lost` or
    /// `ambiguous` (discovery heard several).
    pub state: String,
    /// Where it answers (`ip:port`), once known.
    pub address: Option<String>,
    pub family: Option<String>,
    pub model: Option<String>,
    pub name: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    pub mac: Option<String>,
    /// When it last answered (UTC, ISO 8601).
    pub last_seen: Option<String>,
    /// The USB card's channels as the console names them.
    pub channels: Vec<ChannelAlias>,
    /// Consoles discovery heard when it heard more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// Datagrams dropped: from elsewhere than the console, or not OSC.
    pub dropped: u64,
    /// What is wrong, in words (no answer, ambiguous, …).
    pub problem: Option<String>,
}

/// One card channel as the console names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAlias {
    /// 1-based card (device) channel.
    pub channel: u16,
    pub console_channel: Option<u16>,
    pub name: Option<String>,
    /// `read` (the console's routing), `assumed` (N is N), `override`.
    pub routing: String,
}

impl ConsoleView {
    pub fn off() -> Self {
        Self {
            state: "off".into(),
            ..Self::default()
        }
    }

    /// The console's name for 1-based device channel `channel`, if any.
    pub fn name_of(&self, channel: u16) -> Option<&str> {
        self.channels
            .iter()
            .find(|c| c.channel == channel)
            .and_then(|c| c.name.as_deref())
    }

    /// The console channel device channel `channel` carries, if known.
    pub fn console_channel_of(&self, channel: u16) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.channel == channel)
            .and_then(|c| c.console_channel)
    }

    /// The identity on the wire, once known.
    pub fn identity(&self) -> Option<rakkr_protocol::ConsoleIdentity> {
        Some(rakkr_protocol::ConsoleIdentity {
            family: self.family.clone()?,
            model: self.model.clone()?,
            name: self.name.clone().unwrap_or_default(),
            firmware: self.firmware.clone().unwrap_or_default(),
            serial: self.serial.clone(),
            mac: self.mac.clone(),
            address: self.address.clone().unwrap_or_default(),
        })
    }

    /// One line for people: `X32 "FOH" (firmware 4.06) at 10.0.0.5:10023`.
    pub fn summary(&self) -> String {
        match (&self.model, &self.address) {
            (Some(m), Some(a)) => format!(
                "{m} {:?} (firmware {}) at {a}, {}",
                self.name.as_deref().unwrap_or(""),
                self.firmware.as_deref().unwrap_or("?"),
                self.state
            ),
            _ => match &self.problem {
                Some(p) => format!("{}: {p}", self.state),
                None => self.state.clone(),
            },
        }
    }
}
