//! Configuration: TOML file, then `RAKKR_*` variables over it, then
//! validation into a resolved [`Config`]. Parsing and validation do no I/O
//! ([`parse`]); [`load`] reads the file.
//!
//! The file is written by the operator (or GitOps); the agent never rewrites it.

mod env;
mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use raw::RawConfig;

pub use crate::record::encoder::Container;

/// Default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/rakkr/recorder-agent.toml";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rakkr/agent";
/// Default TCP port of the controller's agent listener.
pub const DEFAULT_CONTROLLER_PORT: u16 = 7443;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path} is not valid: {detail}")]
    Syntax { path: String, detail: String },
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Env {
        var: String,
        value: String,
        expected: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub node: NodeConfig,
    pub controller: ControllerConfig,
    pub trust: TrustPaths,
    pub recordings_path: PathBuf,
    pub disk: DiskGuard,
    pub capture: CaptureConfig,
    pub outbox_max_events: usize,
    pub log_level: Option<String>,
    pub update: UpdateConfig,
}

/// Probation of a freshly installed binary (see `update/probation.rs`).
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// The new binary must be welcomed by the controller within this long
    /// after its start, else the previous binary is restored.
    pub probation: Duration,
    /// ...and then stay up this long before the update is committed.
    pub stable: Duration,
    /// Starts without a commit after which the previous binary is restored
    /// (a binary that crashes at start).
    pub max_starts: u32,
    /// Extra release keys (minisign public keys, base64), trusted by
    /// development builds only; see `update/release.rs`.
    pub trusted_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `None`: taken from the node certificate's common name.
    pub id: Option<String>,
    pub alias: Option<String>,
    pub site: String,
    pub room: String,
    pub building: Option<String>,
    pub floor: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `None`: not configured (the daemon cannot run; inventory still works).
    pub endpoint: Option<Endpoint>,
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured, for display.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Name the controller certificate must carry (default: `host`).
    pub server_name: String,
}

impl Endpoint {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrustPaths {
    pub ca_bundle: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    /// An X32/M32/X-USB/Wing by name, else the default input.
    Auto,
    /// An exact ALSA PCM name, e.g. `hw:CARD=XUSB,DEV=0`.
    Exact(String),
    /// A glob over device names and descriptions (`*`, `?`).
    Pattern(String),
}

#[derive(Debug, Clone)]
pub struct DiskGuard {
    /// A take does not start with less free space than this.
    pub min_free_bytes: u64,
    /// Below this a recording take warns (event + log), once per crossing.
    pub warn_free_bytes: u64,
    /// Below this a recording take closes every file and stops.
    pub stop_free_bytes: u64,
}

impl CaptureConfig {
    /// The name of 1-based channel `n` (file names, metadata, meters).
    pub fn channel_name(&self, n: u16) -> String {
        self.channel_names
            .get(usize::from(n).wrapping_sub(1))
            .cloned()
            .unwrap_or_else(|| format!("Input {n}"))
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub device: DeviceSelector,
    /// `None`: all the device offers.
    pub channels: Option<u16>,
    pub sample_rate: u32,
    /// Recording file format.
    pub format: Container,
    /// An ALSA sample format given as `capture.format` (today's agent's
    /// meaning); ours is negotiated with the device, so it is only reported.
    pub legacy_sample_format: Option<String>,
    /// Longest segment of a take.
    pub segment: Duration,
    /// Period size in frames (`None`: 1024, clamped to what the device allows).
    pub buffer_frames: Option<u32>,
    /// Names for channels 1, 2, … (file names and metadata); channels
    /// beyond the list are "Input N".
    pub channel_names: Vec<String>,
    /// Audio kept while idle so a take can start in the past (0: none).
    /// Costs 6 MB per second for 32 channels at 48 kHz.
    pub pre_roll: Duration,
    /// Real-time scheduling for the capture thread.
    pub realtime: Realtime,
}

/// `capture.realtime` (`auto`, `always`, `off`) with
/// `capture.realtime_priority` (SCHED_FIFO 1–99, default 70).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    Off,
    /// Hardware PCMs only (`hw:`, `plughw:`): a userspace plugin may
    /// never block (the `null` PCM polls as always ready) and would spin at
    /// real-time priority.
    Hardware(u8),
    Always(u8),
}

impl Realtime {
    /// The SCHED_FIFO priority to ask for when capturing from `device`.
    pub fn priority_for(self, device: &str) -> Option<u8> {
        match self {
            Self::Off => None,
            Self::Always(p) => Some(p),
            Self::Hardware(p) => ["hw:", "plughw:"]
                .iter()
                .any(|pre| device.starts_with(pre))
                .then_some(p),
        }
    }
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

/// An endpoint from a `rakkr://HOST[:PORT]` URL (server name = host).
pub fn endpoint_from_url(url: &str) -> Result<Endpoint, ConfigError> {
    let (host, port) = parse_url(url)?;
    Ok(Endpoint {
        url: url.to_owned(),
        server_name: host.clone(),
        host,
        port,
    })
}

fn parse_url(url: &str) -> Result<(String, u16), ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!(
            "controller.url {url:?} (RAKKR_CONTROLLER_URL) {why}; expected rakkr://HOST[:PORT]"
        ))
    };
    let rest = match url.split_once("://") {
        None => url,
        Some(("rakkr", rest)) => rest,
        Some(("http" | "https", _)) => {
            return Err(bad(
                "is an HTTP URL of the previous agent; this agent speaks the Rakkr link protocol over mutual TLS",
            ));
        }
        Some(_) => return Err(bad("has an unknown scheme")),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad("has no host or has a path"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => DEFAULT_CONTROLLER_PORT,
        Some(p) => p.parse().map_err(|_| bad("has an invalid port"))?,
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok((host.to_owned(), port))
}

fn non_empty(v: Option<String>, what: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ConfigError::Invalid(format!("{what} is empty"))),
        other => Ok(other),
    }
}

/// Parses config text (may be empty), overlays variables from `env`,
/// validates. `path` only names the source in errors.
pub fn parse(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    state_dir: &Path,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
    // The file alone first: a wrong type or unknown key is reported with
    // its line and column (the table the variables are merged into has no
    // positions).
    toml::from_str::<RawConfig>(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let file = table.clone();
    env::overlay(&mut table, env)?;
    let merged = table.clone();
    let raw = RawConfig::deserialize(table).map_err(|e| ConfigError::Syntax {
        path: format!("{path} (with RAKKR_* variables applied)"),
        detail: e.to_string(),
    })?;
    resolve(raw, state_dir).map_err(|e| match e {
        ConfigError::Invalid(msg) => {
            ConfigError::Invalid(with_line(msg, text, path, &file, &merged))
        }
        other => other,
    })
}

/// Appends where in the file the key an error names (its first word,
/// `section.key`) is set, when the file's value is the one in force (no
/// variable overrode it).
fn with_line(
    msg: String,
    text: &str,
    path: &str,
    file: &toml::Table,
    merged: &toml::Table,
) -> String {
    let Some((section, key)) = msg
        .split_whitespace()
        .next()
        .and_then(|w| w.split_once('.'))
    else {
        return msg;
    };
    let get = |t: &toml::Table| t.get(section).and_then(|s| s.get(key)).cloned();
    if get(file).is_none() || get(file) != get(merged) {
        return msg;
    }
    match line_of(text, section, key) {
        Some(n) => format!("{msg} (line {n} of {path})"),
        None => msg,
    }
}

/// The 1-based line where `[section]` sets `key` (or `section.key` is set
/// at the top level).
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim().to_owned();
            continue;
        }
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if (current == section && k == key)
            || (current.is_empty() && k == format!("{section}.{key}"))
        {
            return Some(i + 1);
        }
    }
    None
}

fn resolve(raw: RawConfig, state_dir: &Path) -> Result<Config, ConfigError> {
    let trust_dir = state_dir.join("trust");
    let c = raw.controller;
    let endpoint = match non_empty(c.url, "controller.url")? {
        None => None,
        Some(url) => {
            let (host, port) = parse_url(&url)?;
            let server_name =
                non_empty(c.server_name, "controller.server_name")?.unwrap_or_else(|| host.clone());
            rustls_pki_types_check(&server_name)?;
            Some(Endpoint {
                url,
                host,
                port,
                server_name,
            })
        }
    };
    let secs = |v: Option<u64>, default: u64, what: &str| -> Result<Duration, ConfigError> {
        match v.unwrap_or(default) {
            0 => Err(ConfigError::Invalid(format!("{what} must be at least 1"))),
            n => Ok(Duration::from_secs(n)),
        }
    };
    let backoff_initial = Duration::from_millis(c.backoff_initial_ms.unwrap_or(1000).max(10));
    let backoff_max = Duration::from_millis(c.backoff_max_ms.unwrap_or(30_000));
    if backoff_max < backoff_initial {
        return Err(ConfigError::Invalid(format!(
            "controller.backoff_max_ms ({}) is below controller.backoff_initial_ms ({})",
            backoff_max.as_millis(),
            backoff_initial.as_millis()
        )));
    }
    let n = raw.node;
    let tags = n.tags.unwrap_or_default();
    if tags.iter().any(|t| t.trim().is_empty()) {
        return Err(ConfigError::Invalid(
            "node.tags contains an empty tag".into(),
        ));
    }
    let cap = raw.capture;
    let device = match cap.device.as_deref().map(str::trim) {
        None | Some("" | "auto") => DeviceSelector::Auto,
        Some(d) if d.contains(['*', '?']) => DeviceSelector::Pattern(d.to_owned()),
        Some(d) => DeviceSelector::Exact(d.to_owned()),
    };
    let sample_rate = cap.sample_rate.unwrap_or(48_000);
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
    let segment = Duration::from_secs(cap.segment_seconds.unwrap_or(3600));
    if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&segment) {
        return Err(ConfigError::Invalid(format!(
            "capture.segment_seconds {} is outside 1..=86400",
            segment.as_secs()
        )));
    }
    let names = cap.channel_names.unwrap_or_default();
    if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
        return Err(ConfigError::Invalid(format!(
            "capture.channel_names has an empty name at position {}",
            i + 1
        )));
    }
    let disk = disk_guard(&raw.storage)?;
    let outbox_max_events = raw.outbox.max_events.unwrap_or(10_000);
    if outbox_max_events < 16 {
        return Err(ConfigError::Invalid(
            "outbox.max_events must be at least 16".into(),
        ));
    }
    Ok(Config {
        source: None,
        state_dir: state_dir.to_owned(),
        node: NodeConfig {
            id: non_empty(n.id, "node.id")?,
            alias: non_empty(n.alias, "node.alias")?,
            site: non_empty(n.site, "node.site")?.unwrap_or_else(|| "Unassigned Site".into()),
            room: non_empty(n.room, "node.room")?.unwrap_or_else(|| "Unassigned Room".into()),
            building: non_empty(n.building, "node.building")?,
            floor: non_empty(n.floor, "node.floor")?,
            tags,
        },
        controller: ControllerConfig {
            endpoint,
            heartbeat: secs(c.heartbeat_seconds, 15, "controller.heartbeat_seconds")?,
            connect_timeout: secs(
                c.connect_timeout_seconds,
                10,
                "controller.connect_timeout_seconds",
            )?,
            backoff_initial,
            backoff_max,
        },
        trust: TrustPaths {
            ca_bundle: c.ca_cert_path.unwrap_or_else(|| trust_dir.join("ca.pem")),
            cert: raw
                .trust
                .cert_path
                .unwrap_or_else(|| trust_dir.join("node.pem")),
            key: raw
                .trust
                .key_path
                .unwrap_or_else(|| trust_dir.join("node.key")),
        },
        recordings_path: raw
            .storage
            .recordings_path
            .unwrap_or_else(|| state_dir.join("recordings")),
        disk,
        capture: CaptureConfig {
            device,
            channels,
            sample_rate,
            format,
            legacy_sample_format,
            segment,
            buffer_frames: match cap.buffer_frames {
                Some(n) if !(16..=65_536).contains(&n) => {
                    return Err(ConfigError::Invalid(format!(
                        "capture.buffer_frames {n} is outside 16..=65536"
                    )));
                }
                other => other,
            },
            channel_names: names,
            pre_roll: match cap.pre_roll_seconds.unwrap_or(0) {
                n @ 0..=30 => Duration::from_secs(n),
                n => {
                    return Err(ConfigError::Invalid(format!(
                        "capture.pre_roll_seconds {n} is above 30"
                    )));
                }
            },
            realtime: match (
                cap.realtime.as_deref().unwrap_or("auto"),
                cap.realtime_priority.unwrap_or(70),
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
            },
        },
        outbox_max_events,
        log_level: raw.log.level,
        update: UpdateConfig {
            probation: secs(
                raw.update.probation_seconds,
                300,
                "update.probation_seconds",
            )?,
            stable: secs(raw.update.stable_seconds, 30, "update.stable_seconds")?,
            max_starts: match raw.update.max_starts.unwrap_or(3) {
                n @ 1..=20 => n,
                n => {
                    return Err(ConfigError::Invalid(format!(
                        "update.max_starts {n} is outside 1..=20"
                    )));
                }
            },
            trusted_keys: trusted_keys(raw.update.trusted_keys.unwrap_or_default())?,
        },
    })
}

/// At most this many configured release keys.
const TRUSTED_KEYS_MAX: usize = 8;

fn trusted_keys(keys: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if keys.len() > TRUSTED_KEYS_MAX {
        return Err(ConfigError::Invalid(format!(
            "update.trusted_keys lists {} keys; at most {TRUSTED_KEYS_MAX}",
            keys.len()
        )));
    }
    for (i, k) in keys.iter().enumerate() {
        crate::update::release::parse_key(k).map_err(|e| {
            ConfigError::Invalid(format!(
                "update.trusted_keys[{i}]: {e} (give the second line of a minisign .pub file)"
            ))
        })?;
    }
    Ok(keys)
}

fn disk_guard(s: &raw::RawStorage) -> Result<DiskGuard, ConfigError> {
    const MIB: u64 = 1 << 20;
    let stop = s.stop_free_mb.unwrap_or(256);
    let min = s.min_free_mb.unwrap_or(1024);
    let warn = s.warn_free_mb.unwrap_or(4096);
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

fn rustls_pki_types_check(name: &str) -> Result<(), ConfigError> {
    rakkr_protocol::tls::server_name(name)
        .map(|_| ())
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "controller.server_name {name:?} is not a valid DNS name or IP address"
            ))
        })
}

/// Where the config comes from: an explicit path must exist; the default
/// path may be absent (defaults and variables apply).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub explicit: bool,
}

/// Reads and parses the config file named by `source`, with the process
/// environment.
pub fn load(source: &Source, state_dir: &Path) -> Result<Config, ConfigError> {
    let (text, found) = match std::fs::read_to_string(&source.path) {
        Ok(t) => (t, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !source.explicit => {
            (String::new(), false)
        }
        Err(e) => {
            return Err(ConfigError::Read {
                path: source.path.clone(),
                cause: e,
            });
        }
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut config = parse(&text, &source.path.display().to_string(), &env, state_dir)?;
    config.source = found.then(|| source.path.clone());
    Ok(config)
}

#[cfg(test)]
mod tests;
