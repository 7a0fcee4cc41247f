//! The console a node is wired to, on the wire: what the agent learnt of an
//! X32/M32/X AIR or WING over the network (its identity, its channel
//! names) and the edges it reports as event 27 `Console` (PROTOCOL.md
//! §5.9, version 4).
//!
//! NOTE: append-only like everything on the wire (see `message`).

use serde::{Deserialize, Serialize};

/// Who the console is, as it answered (`/xinfo` on an X32-class console,
/// `WING?` or `/?` on a WING). Strings are as the console sent them, cut
/// to the agent's bounds (64 bytes each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleIdentity {
    /// `x32` (X32, M32 and their variants), `xair` or `wing`.
    pub family: String,
    /// The console's own model string (`X32`, `M32`, `XR18`, `ngc-full`, …).
    pub model: String,
    /// Its network name.
    pub name: String,
    pub firmware: String,
    /// WING only (X32-class consoles do not say theirs).
    pub serial: Option<String>,
    /// From the node's neighbour table, when the console is on its LAN.
    pub mac: Option<String>,
    /// `ip:port` the agent speaks OSC to.
    pub address: String,
}

/// A take and the position (frames since its start) something happened at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeAt {
    pub take_id: String,
    pub at_sample: u64,
}

/// Console edges. Variant indices: Found 0, Lost 1, Back 2, Swapped 3,
/// FirmwareChanged 4, Renamed 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleEvent {
    /// The first answer since the agent started.
    Found { console: ConsoleIdentity },
    /// No answer for `silent_ms` (off, rebooting, unplugged): names stay
    /// as last known; capture is not affected.
    Lost {
        console: ConsoleIdentity,
        silent_ms: u64,
    },
    /// Answering again after `away_ms`, the same console.
    Back {
        console: ConsoleIdentity,
        away_ms: u64,
    },
    /// Another console answers at the console's address: another serial,
    /// MAC or model (or name, when the console says neither).
    Swapped {
        from: ConsoleIdentity,
        to: ConsoleIdentity,
    },
    /// The same console, another firmware (`from` the one before).
    FirmwareChanged {
        console: ConsoleIdentity,
        from: String,
    },
    /// A channel's name changed on the console: console channel
    /// `console_channel`, recorded on the node's device channels
    /// `device_channels` (1-based; empty when the USB routing carries it
    /// nowhere), and where it happened in every take recording it.
    Renamed {
        console_channel: u16,
        device_channels: Vec<u16>,
        from: String,
        to: String,
        takes: Vec<TakeAt>,
    },
}
