//! Health signals: what the node watches, each raised and cleared with
//! hysteresis, reported as typed events (`EventBody::Health`) and shown by
//! `status`.
//!
//! - `levels`: clipping, flatline, low signal, correlated adjacent
//!   channels — from the meter's sums, one observation per second of audio.
//! - `system`: disk and CPU pressure, the kernel's clock sync state.
//! - `clock`: the node's clock against the controller's (NTP-style).
//! - `debounce`: the hysteresis.
//!
//! [`Monitor`] turns observations into edges. It is a plain value: the
//! health job (`jobs/health.rs`) owns it and feeds it; nothing here does
//! I/O except `system`'s readers.

pub mod clock;
pub mod debounce;
pub mod levels;
pub mod system;

use std::collections::BTreeMap;

use rakkr_protocol::health::{HEALTH_CHANNELS_MAX, HEALTH_SUMMARY_MAX};
use rakkr_protocol::{HealthEvent, HealthSignal, Severity};
use serde::{Deserialize, Serialize};

use crate::config::HealthConfig;
use debounce::{Change, Debounce, Observation};

/// One observation of one signal, with what was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub signal: HealthSignal,
    pub observation: Observation,
    pub interface_id: String,
    pub channels: Vec<u16>,
    pub value: f32,
    pub threshold: f32,
}

impl From<(levels::Observed, &str)> for Reading {
    fn from((o, interface_id): (levels::Observed, &str)) -> Self {
        Reading {
            signal: o.signal,
            observation: o.observation,
            interface_id: interface_id.to_owned(),
            channels: o.channels,
            value: o.value,
            threshold: o.threshold,
        }
    }
}

/// A signal as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalStatus {
    pub signal: String,
    /// The controller's event type while raised.
    pub controller_type: String,
    /// `None`: clear.
    pub severity: Option<String>,
    /// Observations so far toward a change (the hysteresis at work).
    pub pending: u32,
    pub value: f32,
    pub threshold: f32,
    pub channels: Vec<u16>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_id: String,
    /// When it was last raised or cleared (ms since the epoch; 0: never).
    pub since_ms: u64,
}

#[derive(Debug)]
struct State {
    debounce: Debounce,
    last: Reading,
    since_ms: u64,
}

/// Every signal's hysteresis and last reading.
#[derive(Debug)]
pub struct Monitor {
    cfg: HealthConfig,
    states: BTreeMap<HealthSignal, State>,
}

fn list(channels: &[u16]) -> String {
    let shown: Vec<String> = channels.iter().take(16).map(u16::to_string).collect();
    let more = channels.len().saturating_sub(16);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// One sentence for an operator.
fn summary(r: &Reading, raised: bool, n: u32) -> String {
    use HealthSignal::*;
    let (v, t) = (r.value, r.threshold);
    let s = match (r.signal, raised) {
        (Clipping, true) => format!(
            "channel(s) {} clip: peak {v:.1} dBFS, at or above {t:.1}",
            list(&r.channels)
        ),
        (Flatline, true) => {
            format!("every channel is silent: loudest RMS {v:.1} dBFS, at or below {t:.1}")
        }
        (LowSignal, true) => format!("signal is low: loudest RMS {v:.1} dBFS, at or below {t:.1}"),
        (ChannelCorrelation, true) => format!(
            "channel(s) {} each carry the same signal as the next (or its inverse): |r| {v:.3}, at or above {t:.2}",
            list(&r.channels)
        ),
        (Xrun, true) => format!("audio was lost: {v:.0} xrun(s) or lost frames in the last second"),
        (DeviceUnavailable, true) => "the capture device is unavailable".to_owned(),
        (DiskPressure, true) => format!("the recordings disk is {v:.1} % used"),
        (CpuPressure, true) => format!("load is {v:.2} per core"),
        (ClockSkew, true) => {
            format!("the node's clock is {v:.1} s off the controller's (limit {t:.1} s)")
        }
        (signal, false) => format!("{} cleared", signal.name()),
    };
    let s = format!("{s} ({n} observation(s) in a row)");
    rakkr_protocol::limits::truncated(&s, HEALTH_SUMMARY_MAX).to_owned()
}

impl Monitor {
    pub fn new(cfg: HealthConfig) -> Self {
        Self {
            cfg,
            states: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// Swaps the thresholds whole (a pushed configuration); raised
    /// signals stay raised until the new thresholds clear them.
    pub fn set_config(&mut self, cfg: HealthConfig) {
        for st in self.states.values_mut() {
            st.debounce.set_counts(cfg.raise_after, cfg.clear_after);
        }
        self.cfg = cfg;
    }

    /// Takes one observation; returns the event of an edge.
    pub fn observe(&mut self, mut r: Reading, now_ms: u64) -> Option<HealthEvent> {
        r.channels.truncate(HEALTH_CHANNELS_MAX);
        let (raise, clear) = (self.cfg.raise_after, self.cfg.clear_after);
        let st = self.states.entry(r.signal).or_insert_with(|| State {
            debounce: Debounce::new(raise, clear),
            last: r.clone(),
            since_ms: 0,
        });
        let change = st.debounce.observe(r.observation);
        // A cleared signal keeps the channels it was raised for in status.
        if !(matches!(r.observation, Observation::Good) && st.debounce.active().is_some()) {
            st.last = r.clone();
        } else {
            st.last.value = r.value;
        }
        let change = change?;
        st.since_ms = now_ms;
        let (raised, severity, n) = match change {
            Change::Raised(s, n) => (true, s, n),
            Change::Cleared(n) => (false, Severity::Info, n),
        };
        Some(HealthEvent {
            signal: r.signal,
            raised,
            severity,
            interface_id: r.interface_id.clone(),
            channels: if raised {
                r.channels.clone()
            } else {
                Vec::new()
            },
            value: r.value,
            threshold: r.threshold,
            observations: n,
            summary: summary(&r, raised, n),
        })
    }

    /// Every signal observed so far.
    pub fn status(&self) -> Vec<SignalStatus> {
        self.states
            .iter()
            .map(|(signal, st)| SignalStatus {
                signal: signal.name().to_owned(),
                controller_type: signal.controller_type(true).to_owned(),
                severity: st.debounce.active().map(|s| s.as_str().to_owned()),
                pending: st.debounce.streak(),
                value: st.last.value,
                threshold: st.last.threshold,
                channels: st.last.channels.clone(),
                interface_id: st.last.interface_id.clone(),
                since_ms: st.since_ms,
            })
            .collect()
    }
}

/// What `status` shows of health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    pub signals: Vec<SignalStatus>,
    /// The node's clock against the controller's (`None`: not measured yet).
    pub clock: Option<clock::Estimate>,
    pub clock_sync: Option<system::ClockSync>,
}

impl HealthStatus {
    /// Signals raised now.
    pub fn raised(&self) -> impl Iterator<Item = &SignalStatus> {
        self.signals.iter().filter(|s| s.severity.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(obs: Observation) -> Reading {
        Reading {
            signal: HealthSignal::Clipping,
            observation: obs,
            interface_id: "alsa_pcm_x".into(),
            channels: vec![3],
            value: -0.2,
            threshold: -1.0,
        }
    }

    #[test]
    fn an_edge_is_an_event_with_what_was_measured() {
        let mut m = Monitor::new(HealthConfig::default());
        let bad = Observation::Bad(Severity::Warning);
        assert!(m.observe(clip(bad), 1).is_none());
        assert!(m.observe(clip(bad), 2).is_none());
        assert_eq!(m.status()[0].pending, 2);
        let e = m.observe(clip(bad), 3).expect("raised on the third");
        assert!(e.raised);
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.channels, [3]);
        assert_eq!(e.observations, 3);
        assert!(e.summary.starts_with("channel(s) 3 clip"), "{}", e.summary);
        assert_eq!(m.status()[0].severity.as_deref(), Some("warning"));
        assert_eq!(m.status()[0].since_ms, 3);
        for t in 4..6 {
            assert!(m.observe(clip(Observation::Good), t).is_none());
        }
        assert_eq!(
            m.status()[0].channels,
            [3],
            "status still says which channel"
        );
        let e = m
            .observe(clip(Observation::Good), 6)
            .expect("cleared on the third");
        assert!(!e.raised);
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(m.status()[0].severity, None);
    }
}
