//! What a console said, as typed values: its identity and the facts its
//! answers carry (names, sources, USB routing). Both dialects (`x32`,
//! `wing`) parse into these.

use serde::Serialize;

/// Which protocol a console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// X32 and M32 (and their Compact, Producer, Rack, Core variants):
    /// OSC on UDP 10023, 32 input channels.
    X32,
    /// X AIR (XR12/16/18, MR18): the X32 dialect on UDP 10024.
    Xair,
    /// WING: `WING?` on UDP 2222, OSC on UDP 2223, 40 input channels.
    Wing,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X32 => "x32",
            Self::Xair => "xair",
            Self::Wing => "wing",
        }
    }

    /// The OSC port it listens on.
    pub fn osc_port(self) -> u16 {
        match self {
            Self::X32 => 10023,
            Self::Xair => 10024,
            Self::Wing => 2223,
        }
    }

    /// Input channels with names.
    pub fn channels(self) -> u16 {
        match self {
            Self::X32 => 32,
            Self::Xair => 16,
            Self::Wing => 40,
        }
    }

    /// `x32`, `m32`, `xair` or `wing` (as `console.model` is written).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "x32" | "m32" => Some(Self::X32),
            "xair" | "x-air" | "xr18" | "xr16" | "xr12" | "mr18" => Some(Self::Xair),
            "wing" => Some(Self::Wing),
            _ => None,
        }
    }
}

/// Who a console is, as it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub family: Family,
    pub model: String,
    pub name: String,
    pub firmware: String,
    /// The console's own IP as it reports it.
    pub ip: String,
    /// WING only.
    pub serial: Option<String>,
    /// From the node's neighbour table (the agent fills it in).
    pub mac: Option<String>,
}

impl Identity {
    /// Whether `other` is the same console: the same serial, else the
    /// same MAC, and the same family and model; the same network name
    /// too when neither serial nor MAC is known.
    pub fn same_console(&self, other: &Identity) -> bool {
        if self.family != other.family || self.model != other.model {
            return false;
        }
        if let (Some(a), Some(b)) = (&self.serial, &other.serial) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (&self.mac, &other.mac) {
            return a == b;
        }
        self.name == other.name
    }
}

/// One fact from one answer (or one change notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Identity(Identity),
    /// Console channel `channel` (1-based) is called `name`.
    Name {
        channel: u16,
        name: String,
    },
    /// X32: `/ch/NN/config/source`: 0 off, 1–32 input 1–32, above: aux,
    /// USB, FX, buses.
    X32ChannelSource {
        channel: u16,
        source: u16,
    },
    /// X32: `/config/routing/IN/<block>` (block 0: inputs 1–8, … 3:
    /// 25–32), the source block code.
    X32InputBlock {
        block: u8,
        code: u16,
    },
    /// X32: `/config/routing/CARD/<block>` (block 0: card channels 1–8, …).
    X32CardBlock {
        block: u8,
        code: u16,
    },
    /// WING: `/ch/N/in/conn/grp` (`LCL`, `A`, `USB`, …).
    WingChannelGroup {
        channel: u16,
        group: String,
    },
    /// WING: `/ch/N/in/conn/in`.
    WingChannelInput {
        channel: u16,
        input: u16,
    },
    /// WING: `/io/out/USB/N/grp` (`CH` for a channel's direct out, or an
    /// input group, `OFF`, `MAIN`, …).
    WingUsbGroup {
        output: u16,
        group: String,
    },
    /// WING: `/io/out/USB/N/in`.
    WingUsbInput {
        output: u16,
        input: u16,
    },
}
