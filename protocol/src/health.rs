//! Health signals on the wire: what a node watches (levels, device,
//! system, clock), each raised and cleared with hysteresis by the agent,
//! and the clock probe that measures the node's clock against the
//! controller's.
//!
//! Every signal maps one to one onto the type names the Rakkr controller
//! stores for health events (`agent.meter.clipping`, …, and the names it
//! uses on the way back, `…_recovered`): see [`HealthSignal::controller_type`].
//!
//! NOTE: append-only like everything on the wire (see `message`).

use serde::{Deserialize, Serialize};

/// What is watched. Variant indices: Clipping 0, Flatline 1, LowSignal 2,
/// ChannelCorrelation 3, Xrun 4, DeviceUnavailable 5, DiskPressure 6,
/// CpuPressure 7, ClockSkew 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HealthSignal {
    /// A channel's peak at or above the clip threshold (−1 dBFS).
    Clipping,
    /// Every channel's RMS at or below the flatline floor (−120 dBFS).
    Flatline,
    /// The loudest channel's RMS at or below −55 dBFS (and not flatline).
    LowSignal,
    /// Two adjacent channels with |Pearson r| at or above 0.98: one input
    /// duplicated, or a phase-inverted pair.
    ChannelCorrelation,
    /// Audio was lost (device or ring overrun) within the observation.
    Xrun,
    /// The capture device is missing, busy or silent (stalled).
    DeviceUnavailable,
    /// The recordings file system is 85 % (warning) / 95 % (critical) used.
    DiskPressure,
    /// One-minute load per core at or above 2.0 (warning) / 4.0 (critical).
    CpuPressure,
    /// The node's clock is more than 5 s off the controller's (recovers at
    /// 2 s or less).
    ClockSkew,
}

/// Every signal, in wire order.
pub const ALL_SIGNALS: [HealthSignal; 9] = [
    HealthSignal::Clipping,
    HealthSignal::Flatline,
    HealthSignal::LowSignal,
    HealthSignal::ChannelCorrelation,
    HealthSignal::Xrun,
    HealthSignal::DeviceUnavailable,
    HealthSignal::DiskPressure,
    HealthSignal::CpuPressure,
    HealthSignal::ClockSkew,
];

impl HealthSignal {
    /// The Rakkr controller's health event type for this signal raised
    /// (`raised`) or cleared.
    pub fn controller_type(self, raised: bool) -> &'static str {
        use HealthSignal::*;
        match (self, raised) {
            (Clipping, true) => "agent.meter.clipping",
            (Clipping, false) => "agent.meter.clipping_recovered",
            (Flatline, true) => "agent.meter.flatline",
            (Flatline, false) => "agent.meter.flatline_recovered",
            (LowSignal, true) => "agent.meter.low_signal",
            (LowSignal, false) => "agent.meter.low_signal_recovered",
            (ChannelCorrelation, true) => "agent.meter.channel_correlation",
            (ChannelCorrelation, false) => "agent.meter.channel_correlation_recovered",
            (Xrun, true) => "agent.meter.xrun",
            (DeviceUnavailable, true) => "agent.meter.device_unavailable",
            // The controller has one way back for both capture faults.
            (Xrun | DeviceUnavailable, false) => "agent.meter.capture_recovered",
            (DiskPressure, true) => "agent.system.disk_pressure",
            (DiskPressure, false) => "agent.system.disk_recovered",
            (CpuPressure, true) => "agent.system.cpu_pressure",
            (CpuPressure, false) => "agent.system.cpu_recovered",
            (ClockSkew, true) => "agent.system.clock_skew",
            (ClockSkew, false) => "agent.system.clock_skew_recovered",
        }
    }

    /// A short name for logs, `status` and configuration (`clipping`,
    /// `low_signal`, …).
    pub fn name(self) -> &'static str {
        use HealthSignal::*;
        match self {
            Clipping => "clipping",
            Flatline => "flatline",
            LowSignal => "low_signal",
            ChannelCorrelation => "channel_correlation",
            Xrun => "xrun",
            DeviceUnavailable => "device_unavailable",
            DiskPressure => "disk_pressure",
            CpuPressure => "cpu_pressure",
            ClockSkew => "clock_skew",
        }
    }
}

/// Variant indices: Info 0, Warning 1, Critical 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The controller's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A health signal's edge: raised (or its severity changed while raised)
/// or cleared. Sent as [`crate::EventBody::Health`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub signal: HealthSignal,
    /// `true`: raised (or re-raised at another severity); `false`: cleared.
    pub raised: bool,
    /// `Info` when cleared.
    pub severity: Severity,
    /// The capture interface (inventory id) for level and device signals;
    /// empty for system signals.
    pub interface_id: String,
    /// The channels concerned, 1-based (clipping channels; the first
    /// channel of each correlated pair). At most [`HEALTH_CHANNELS_MAX`].
    pub channels: Vec<u16>,
    /// What was measured in the last observation: dBFS for levels, |r| for
    /// correlation, frames lost for xruns, percent used for disk, load per
    /// core for CPU, skew in seconds for the clock.
    pub value: f32,
    /// The threshold it was compared with, in the same unit.
    pub threshold: f32,
    /// Consecutive observations that made the edge (the hysteresis).
    pub observations: u32,
    /// One sentence for an operator. At most [`HEALTH_SUMMARY_MAX`] bytes.
    pub summary: String,
}

/// Most channels named in one [`HealthEvent`].
pub const HEALTH_CHANNELS_MAX: usize = 512;
/// Longest [`HealthEvent::summary`], in bytes.
pub const HEALTH_SUMMARY_MAX: usize = 1024;

/// The controller's answer to [`crate::AgentMsg::ClockProbe`], sent at
/// once: the probe's own send time (agent clock) and the controller's
/// receive and send times (controller clock), all ms since the epoch. With
/// its own receive time t4 the agent has the four NTP timestamps: offset
/// `((t2 - t1) + (t3 - t4)) / 2`, round trip `(t4 - t1) - (t3 - t2)`.
/// See: RFC 5905 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockReply {
    pub probe_sent_ms: u64,
    pub received_ms: u64,
    pub replied_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_has_distinct_names_on_the_way_up() {
        let mut up: Vec<_> = ALL_SIGNALS
            .iter()
            .map(|s| s.controller_type(true))
            .collect();
        up.sort();
        up.dedup();
        assert_eq!(up.len(), ALL_SIGNALS.len());
        for s in ALL_SIGNALS {
            assert!(s.controller_type(true).starts_with("agent."));
            assert!(s.controller_type(false).starts_with("agent."));
            assert!(
                s.controller_type(true).len() <= 160,
                "the controller's limit"
            );
        }
    }
}
