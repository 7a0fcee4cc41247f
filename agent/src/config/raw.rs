//! The config file as written: every key optional, unknown keys refused
//! (a typo is an error naming the key, not a silently ignored setting).

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) node: RawNode,
    #[serde(default)]
    pub(super) controller: RawController,
    #[serde(default)]
    pub(super) trust: RawTrust,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) capture: RawCapture,
    #[serde(default)]
    pub(super) outbox: RawOutbox,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) update: RawUpdate,
    #[serde(default)]
    pub(super) transfer: RawTransfer,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) health: super::health::RawHealth,
    #[serde(default)]
    pub(super) console: super::console::RawConsole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    pub(super) max_bytes_per_second: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) delete_received_after_hours: Option<u64>,
    pub(super) max_takes_mb: Option<u64>,
    pub(super) min_free_percent: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) id: Option<String>,
    pub(super) alias: Option<String>,
    pub(super) site: Option<String>,
    pub(super) room: Option<String>,
    pub(super) building: Option<String>,
    pub(super) floor: Option<String>,
    pub(super) tags: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    pub(super) url: Option<String>,
    pub(super) bridge_port: Option<u16>,
    pub(super) server_name: Option<String>,
    pub(super) ca_cert_path: Option<PathBuf>,
    pub(super) heartbeat_seconds: Option<u64>,
    pub(super) connect_timeout_seconds: Option<u64>,
    pub(super) backoff_initial_ms: Option<u64>,
    pub(super) backoff_max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    pub(super) cert_path: Option<PathBuf>,
    pub(super) key_path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) recordings_path: Option<PathBuf>,
    pub(super) min_free_mb: Option<u64>,
    pub(super) warn_free_mb: Option<u64>,
    pub(super) stop_free_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapture {
    pub(super) device: Option<String>,
    pub(super) channels: Option<u16>,
    pub(super) sample_rate: Option<u32>,
    pub(super) format: Option<String>,
    pub(super) buffer_frames: Option<u32>,
    pub(super) segment_seconds: Option<u64>,
    pub(super) channel_names: Option<Vec<String>>,
    pub(super) pre_roll_seconds: Option<u64>,
    pub(super) meter_hz: Option<u32>,
    pub(super) max_takes: Option<u16>,
    pub(super) resume_within_seconds: Option<u64>,
    pub(super) realtime: Option<String>,
    pub(super) realtime_priority: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    pub(super) max_events: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    pub(super) probation_seconds: Option<u64>,
    pub(super) stable_seconds: Option<u64>,
    pub(super) max_starts: Option<u32>,
    pub(super) trusted_keys: Option<Vec<String>>,
}
