//! From the raw file and variables to a validated [`Config`], one section
//! at a time; every default is named here.

use std::path::Path;
use std::time::Duration;

use super::raw::{self, RawConfig};
use super::{
    CaptureConfig, Config, ConfigError, Container, ControllerConfig, DEFAULT_CONTROLLER_PORT,
    DeviceSelector, DiskGuard, Endpoint, NodeConfig, Realtime, TrustPaths, UpdateConfig,
};

/// Defaults of every key that has one (README, "Configuration").
mod default {
    pub const SITE: &str = "Unassigned Site";
    pub const ROOM: &str = "Unassigned Room";
    pub const HEARTBEAT_SECONDS: u64 = 15;
    pub const CONNECT_TIMEOUT_SECONDS: u64 = 10;
    pub const BACKOFF_INITIAL_MS: u64 = 1_000;
    pub const BACKOFF_MAX_MS: u64 = 30_000;
    pub const SAMPLE_RATE: u32 = 48_000;
    pub const SEGMENT_SECONDS: u64 = 3_600;
    pub const PRE_ROLL_SECONDS: u64 = 0;
    /// Today's agent's rate; the controller's meters expect about this.
    pub const METER_HZ: u32 = 10;
    /// An archive take and a few shorter ones beside it.
    pub const MAX_TAKES: u16 = 4;
    /// Ten minutes: a node that reboots during a show continues it; one
    /// switched on the next day does not start recording by itself.
    pub const RESUME_WITHIN_SECONDS: u64 = 600;
    pub const REALTIME: &str = "auto";
    pub const REALTIME_PRIORITY: u8 = 70;
    pub const STOP_FREE_MB: u64 = 256;
    pub const MIN_FREE_MB: u64 = 1_024;
    pub const WARN_FREE_MB: u64 = 4_096;
    pub const OUTBOX_MAX_EVENTS: usize = 10_000;
    pub const PROBATION_SECONDS: u64 = 300;
    pub const STABLE_SECONDS: u64 = 30;
    pub const MAX_STARTS: u32 = 3;
}

/// At most this many configured release keys.
const TRUSTED_KEYS_MAX: usize = 8;

pub(super) fn resolve(raw: RawConfig, state_dir: &Path) -> Result<Config, ConfigError> {
    let trust = trust(&raw, state_dir);
    let outbox_max_events = raw.outbox.max_events.unwrap_or(default::OUTBOX_MAX_EVENTS);
    if outbox_max_events < 16 {
        return Err(ConfigError::Invalid(
            "outbox.max_events must be at least 16".into(),
        ));
    }
    Ok(Config {
        source: None,
        state_dir: state_dir.to_owned(),
        node: node(raw.node)?,
        controller: controller(raw.controller)?,
        trust,
        recordings_path: raw
            .storage
            .recordings_path
            .clone()
            .unwrap_or_else(|| state_dir.join("recordings")),
        disk: disk_guard(&raw.storage)?,
        capture: capture(raw.capture)?,
        outbox_max_events,
        log_level: raw.log.level,
        update: update(raw.update)?,
        transfer_max_bytes_per_second: raw.transfer.max_bytes_per_second.unwrap_or(0),
        retention: retention(&raw.retention)?,
        health: super::health::resolve(raw.health)?,
        console: super::console::resolve(raw.console)?,
        origins: Default::default(),
        pushed: None,
        pushed_ignored: None,
        file_text: String::new(),
        legacy_notes: Vec::new(),
    })
}

fn retention(r: &raw::RawRetention) -> Result<crate::take::retention::Policy, ConfigError> {
    const MIB: u64 = 1 << 20;
    let hours = match r.delete_received_after_hours {
        Some(h) if h > 24 * 3650 => {
            return Err(ConfigError::Invalid(format!(
                "retention.delete_received_after_hours {h} is over ten years"
            )));
        }
        h => h.map(|h| Duration::from_secs(h * 3600)),
    };
    let percent = match r.min_free_percent {
        Some(p @ 1..=90) => Some(p as u8),
        None => None,
        Some(p) => {
            return Err(ConfigError::Invalid(format!(
                "retention.min_free_percent {p} is outside 1..=90"
            )));
        }
    };
    let max_bytes = match r.max_takes_mb {
        Some(0) => {
            return Err(ConfigError::Invalid(
                "retention.max_takes_mb must be at least 1 (leave it out to keep every take)"
                    .into(),
            ));
        }
        m => m.map(|m| m.saturating_mul(MIB)),
    };
    Ok(crate::take::retention::Policy {
        delete_received_after: hours,
        max_takes_bytes: max_bytes,
        min_free_percent: percent,
    })
}

fn secs(v: Option<u64>, default: u64, what: &str) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::Invalid(format!("{what} must be at least 1"))),
        n => Ok(Duration::from_secs(n)),
    }
}

fn node(n: raw::RawNode) -> Result<NodeConfig, ConfigError> {
    let tags = n.tags.unwrap_or_default();
    if tags.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::Invalid(
            "node.tags contains an empty tag".into(),
        ));
    }
    Ok(NodeConfig {
        id: non_empty(n.id, "node.id")?,
        alias: non_empty(n.alias, "node.alias")?,
        site: non_empty(n.site, "node.site")?.unwrap_or_else(|| default::SITE.into()),
        room: non_empty(n.room, "node.room")?.unwrap_or_else(|| default::ROOM.into()),
        building: non_empty(n.building, "node.building")?,
        floor: non_empty(n.floor, "node.floor")?,
        tags,
    })
}

fn controller(c: raw::RawController) -> Result<ControllerConfig, ConfigError> {
    let bridge_port = c.bridge_port.unwrap_or(DEFAULT_CONTROLLER_PORT);
    if bridge_port == 0 {
        return Err(ConfigError::Invalid(
            "controller.bridge_port (RAKKR_CONTROLLER_BRIDGE_PORT) must be 1-65535".into(),
        ));
    }
    let endpoint = match non_empty(c.url, "controller.url")? {
        None => None,
        Some(url) => {
            let (host, port) = parse_url(&url, bridge_port)?;
            let server_name =
                non_empty(c.server_name, "controller.server_name")?.unwrap_or_else(|| host.clone());
            server_name_check(&server_name)?;
            Some(Endpoint {
                url,
                host,
                port,
                server_name,
            })
        }
    };
    let backoff_initial = Duration::from_millis(
        c.backoff_initial_ms
            .unwrap_or(default::BACKOFF_INITIAL_MS)
            .max(10),
    );
    let backoff_max = Duration::from_millis(c.backoff_max_ms.unwrap_or(default::BACKOFF_MAX_MS));
    if backoff_max < backoff_initial {
        return Err(ConfigError::Invalid(format!(
            "controller.backoff_max_ms ({}) is below controller.backoff_initial_ms ({})",
            backoff_max.as_millis(),
            backoff_initial.as_millis()
        )));
    }
    Ok(ControllerConfig {
        endpoint,
        bridge_port,
        heartbeat: secs(
            c.heartbeat_seconds,
            default::HEARTBEAT_SECONDS,
            "controller.heartbeat_seconds",
        )?,
        connect_timeout: secs(
            c.connect_timeout_seconds,
            default::CONNECT_TIMEOUT_SECONDS,
            "controller.connect_timeout_seconds",
        )?,
        backoff_initial,
        backoff_max,
    })
}

fn trust(raw: &RawConfig, state_dir: &Path) -> TrustPaths {
    let dir = state_dir.join("trust");
    TrustPaths {
        ca_bundle: raw
            .controller
            .ca_cert_path
            .clone()
            .unwrap_or_else(|| dir.join("ca.pem")),
        cert: raw
            .trust
            .cert_path
            .clone()
            .unwrap_or_else(|| dir.join("node.pem")),
        key: raw
            .trust
            .key_path
            .clone()
            .unwrap_or_else(|| dir.join("node.key")),
    }
}

fn capture(cap: raw::RawCapture) -> Result<CaptureConfig, ConfigError> {
    let device = match cap.device.as_deref().map(str::trim) {
        None | Some("" | "auto") => DeviceSelector::Auto,
        Some(d) if d.contains(['*', '?']) => DeviceSelector::Pattern(d.to_owned()),
        Some(d) => DeviceSelector::Exact(d.to_owned()),
    };
    let sample_rate = cap.sample_rate.unwrap_or(default::SAMPLE_RATE);
    if !(8_000..=384_000).contains(&sample_rate) {
        return Err(ConfigError::Invalid(format!(
            "capture.sample_rate {sample_rate} is outside 8000..=384000"
        )));
    }
    let channels = match cap.channels {
        None | Some(0) => None,
        Some(n) if n > 512 => {
            return Err(ConfigError::Invalid(format!(
                "capture.channels {n} is above 512"
            )));
        }
        Some(n) => Some(n),
    };
    let (format, legacy_sample_format) = parse_format(cap.format.as_deref())?;
    let segment = Duration::from_secs(cap.segment_seconds.unwrap_or(default::SEGMENT_SECONDS));
    if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&segment) {
        return Err(ConfigError::Invalid(format!(
            "capture.segment_seconds {} is outside 1..=86400",
            segment.as_secs()
        )));
    }
    let channel_names = cap.channel_names.unwrap_or_default();
    if let Some(i) = channel_names.iter().position(|n| n.trim().is_empty()) {
        return Err(ConfigError::Invalid(format!(
            "capture.channel_names has an empty name at position {}",
            i + 1
        )));
    }
    let buffer_frames = match cap.buffer_frames {
        Some(n) if !(16..=65_536).contains(&n) => {
            return Err(ConfigError::Invalid(format!(
                "capture.buffer_frames {n} is outside 16..=65536"
            )));
        }
        other => other,
    };
    let pre_roll = match cap.pre_roll_seconds.unwrap_or(default::PRE_ROLL_SECONDS) {
        n @ 0..=30 => Duration::from_secs(n),
        n => {
            return Err(ConfigError::Invalid(format!(
                "capture.pre_roll_seconds {n} is above 30"
            )));
        }
    };
    let meter_hz = match cap.meter_hz.unwrap_or(default::METER_HZ) {
        n @ 1..=50 => n,
        n => {
            return Err(ConfigError::Invalid(format!(
                "capture.meter_hz {n} is outside 1..=50"
            )));
        }
    };
    let max_takes = match cap.max_takes.unwrap_or(default::MAX_TAKES) {
        n @ 1..=16 => n,
        n => {
            return Err(ConfigError::Invalid(format!(
                "capture.max_takes {n} is outside 1..=16"
            )));
        }
    };
    let resume_within = match cap
        .resume_within_seconds
        .unwrap_or(default::RESUME_WITHIN_SECONDS)
    {
        n @ 0..=86_400 => Duration::from_secs(n),
        n => {
            return Err(ConfigError::Invalid(format!(
                "capture.resume_within_seconds {n} is above 86400 (a day)"
            )));
        }
    };
    let realtime = match (
        cap.realtime.as_deref().unwrap_or(default::REALTIME),
        cap.realtime_priority.unwrap_or(default::REALTIME_PRIORITY),
    ) {
        (_, p) if !(1..=99).contains(&p) => {
            return Err(ConfigError::Invalid(format!(
                "capture.realtime_priority {p} is outside 1..=99"
            )));
        }
        ("off", _) => Realtime::Off,
        ("auto", p) => Realtime::Hardware(p),
        ("always", p) => Realtime::Always(p),
        (other, _) => {
            return Err(ConfigError::Invalid(format!(
                "capture.realtime {other:?} is not auto, always or off"
            )));
        }
    };
    Ok(CaptureConfig {
        device,
        channels,
        sample_rate,
        format,
        legacy_sample_format,
        segment,
        buffer_frames,
        channel_names,
        pre_roll,
        meter_hz,
        max_takes,
        resume_within,
        realtime,
    })
}

fn update(u: raw::RawUpdate) -> Result<UpdateConfig, ConfigError> {
    Ok(UpdateConfig {
        probation: secs(
            u.probation_seconds,
            default::PROBATION_SECONDS,
            "update.probation_seconds",
        )?,
        stable: secs(
            u.stable_seconds,
            default::STABLE_SECONDS,
            "update.stable_seconds",
        )?,
        max_starts: match u.max_starts.unwrap_or(default::MAX_STARTS) {
            n @ 1..=20 => n,
            n => {
                return Err(ConfigError::Invalid(format!(
                    "update.max_starts {n} is outside 1..=20"
                )));
            }
        },
        trusted_keys: trusted_keys(u.trusted_keys.unwrap_or_default())?,
    })
}

fn trusted_keys(keys: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if keys.len() > TRUSTED_KEYS_MAX {
        return Err(ConfigError::Invalid(format!(
            "update.trusted_keys lists {} keys; at most {TRUSTED_KEYS_MAX}",
            keys.len()
        )));
    }
    for (i, k) in keys.iter().enumerate() {
        crate::release_key::parse_key(k).map_err(|e| {
            ConfigError::Invalid(format!(
                "update.trusted_keys[{i}]: {e} (give the second line of a minisign .pub file)"
            ))
        })?;
    }
    Ok(keys)
}

fn disk_guard(s: &raw::RawStorage) -> Result<DiskGuard, ConfigError> {
    const MIB: u64 = 1 << 20;
    let stop = s.stop_free_mb.unwrap_or(default::STOP_FREE_MB);
    let min = s.min_free_mb.unwrap_or(default::MIN_FREE_MB);
    let warn = s.warn_free_mb.unwrap_or(default::WARN_FREE_MB);
    if stop == 0 {
        return Err(ConfigError::Invalid(
            "storage.stop_free_mb must be at least 1: a disk that fills completely leaves files that cannot be closed".into(),
        ));
    }
    if min < stop || warn < stop {
        return Err(ConfigError::Invalid(format!(
            "storage.min_free_mb ({min}) and storage.warn_free_mb ({warn}) must not be below storage.stop_free_mb ({stop})"
        )));
    }
    Ok(DiskGuard {
        min_free_bytes: min * MIB,
        warn_free_bytes: warn * MIB,
        stop_free_bytes: stop * MIB,
    })
}

fn server_name_check(name: &str) -> Result<(), ConfigError> {
    rakkr_protocol::tls::server_name(name)
        .map(|_| ())
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "controller.server_name {name:?} is not a valid DNS name or IP address"
            ))
        })
}

/// `flac`, `wav` or `w64`; an ALSA sample format name (`S16_LE`, …, as
/// today's agent used `RAKKR_CAPTURE_FORMAT`) means the default, FLAC.
fn parse_format(v: Option<&str>) -> Result<(Container, Option<String>), ConfigError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok((Container::Flac, None));
    };
    Ok(match v.to_ascii_lowercase().as_str() {
        "flac" => (Container::Flac, None),
        "wav" | "bwf" => (Container::Wav, None),
        "w64" => (Container::W64, None),
        "s16_le" | "s24_le" | "s24_3le" | "s32_le" | "float_le" | "auto" => {
            (Container::Flac, Some(v.to_owned()))
        }
        _ => {
            return Err(ConfigError::Invalid(format!(
                "capture.format {v:?} (RAKKR_CAPTURE_FORMAT) is not one of flac, wav, w64"
            )));
        }
    })
}

/// `rakkr://HOST[:PORT]` (or a bare `HOST[:PORT]`) → host and port.
///
/// An `http(s)://HOST[:PORT][/PATH]` URL is the Rakkr controller's HTTP
/// API, as Rakkr's Ansible role writes it for its own agent: this agent
/// links to the rakkr-bridge next to that controller, `rakkr://HOST` at
/// `bridge_port` (the URL's port and path are the API's, not the
/// bridge's).
pub(super) fn parse_url(url: &str, bridge_port: u16) -> Result<(String, u16), ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!(
            "controller.url {url:?} (RAKKR_CONTROLLER_URL) {why}; expected rakkr://HOST[:PORT] (or the Rakkr controller's https://HOST)"
        ))
    };
    let rest = match url.split_once("://") {
        None => url,
        Some(("rakkr", rest)) => rest,
        Some(("http" | "https", rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let (host, _) = split_host_port(authority).map_err(&bad)?;
            if host.is_empty() || authority.contains('@') {
                return Err(bad("has no host, or has a user name"));
            }
            return Ok((host.to_owned(), bridge_port));
        }
        Some(_) => return Err(bad("has an unknown scheme")),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad("has no host or has a path"));
    }
    let (host, port) = split_host_port(rest).map_err(&bad)?;
    let port = match port {
        None => DEFAULT_CONTROLLER_PORT,
        Some(p) => p.parse().map_err(|_| bad("has an invalid port"))?,
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok((host.to_owned(), port))
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` → host and port text.
pub(super) fn split_host_port(s: &str) -> Result<(&str, Option<&str>), &'static str> {
    Ok(if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("has an unclosed [")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    })
}

fn non_empty(v: Option<String>, what: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ConfigError::Invalid(format!("{what} is empty"))),
        other => Ok(other),
    }
}
