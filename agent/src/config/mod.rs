//! Configuration: TOML file, then `RAKKR_*` variables over it, then
//! validation into a resolved [`Config`]. Parsing and validation do no I/O
//! ([`parse`]); [`load`] reads the file.
//!
//! The file is written by the operator (or GitOps); the agent never rewrites it.

pub mod console;
mod env;
mod health;
mod legacy;
pub mod origins;
pub mod pushed;
mod raw;
mod resolve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use raw::RawConfig;

pub use crate::take::disk::DiskGuard;
pub use crate::take::encoder::Container;
pub use console::ConsoleConfig;
pub use health::HealthConfig;

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
    /// Bytes per second take transfers may read (0: no cap).
    pub transfer_max_bytes_per_second: u64,
    /// Which received takes may leave the disk (see `take/retention.rs`).
    pub retention: crate::take::retention::Policy,
    /// Health signal thresholds and hysteresis (see `health/`).
    pub health: HealthConfig,
    /// The console the node is wired to (see `console/`).
    pub console: ConsoleConfig,
    /// Where each key's value comes from (`section.key` → origin).
    pub origins: std::collections::BTreeMap<String, origins::Origin>,
    /// The pushed document in force, if any.
    pub pushed: Option<pushed::Pushed>,
    /// Why the pushed document kept in the state directory is not in
    /// force (it no longer fits the operator's settings, or is damaged).
    pub pushed_ignored: Option<String>,
    /// The operator's file as read at start (a push is merged with it,
    /// not with later edits: those take a restart, as before).
    pub file_text: String,
    /// What became of the previous Rakkr agent's variables (see `legacy`),
    /// for the log at start.
    pub legacy_notes: Vec<String>,
}

/// Probation of a freshly installed binary (see `update/probation.rs` and `jobs/probation.rs`).
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
    /// The rakkr-bridge port an `http(s)://` controller URL means.
    pub bridge_port: u16,
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
    /// Meter frames per second (windows of `sample_rate / meter_hz`).
    pub meter_hz: u32,
    /// Most takes recording at once from the capture.
    pub max_takes: u16,
    /// A take a crash or power cut interrupted is continued by itself at
    /// the next start, as a new take (see `take/resume.rs`), when it last
    /// wrote this recently (0: never).
    pub resume_within: Duration,
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

/// An endpoint from a `rakkr://HOST[:PORT]` URL (server name = host; an
/// `http(s)://HOST` URL: the bridge at `bridge_port`).
pub fn endpoint_from_url(url: &str, bridge_port: u16) -> Result<Endpoint, ConfigError> {
    let (host, port) = resolve::parse_url(url, bridge_port)?;
    Ok(Endpoint {
        url: url.to_owned(),
        server_name: host.clone(),
        host,
        port,
    })
}

/// Parses config text (may be empty), overlays variables from `env`,
/// validates. `path` only names the source in errors.
pub fn parse(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    state_dir: &Path,
) -> Result<Config, ConfigError> {
    parse_with(text, path, env, state_dir, None)
}

/// [`parse`] over a pushed document: the file's keys and the variables
/// win over it (see `pushed`).
pub fn parse_with(
    text: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    state_dir: &Path,
    pushed: Option<&pushed::Pushed>,
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
    if let Some(p) = pushed {
        table = under(&p.settings, table);
    }
    env::overlay(&mut table, env)?;
    let legacy = legacy::apply(&mut table, env);
    let merged = table.clone();
    let raw = RawConfig::deserialize(table).map_err(|e| ConfigError::Syntax {
        path: format!("{path} (with RAKKR_* variables applied)"),
        detail: e.to_string(),
    })?;
    let mut config = resolve::resolve(raw, state_dir).map_err(|e| match e {
        ConfigError::Invalid(msg) => {
            ConfigError::Invalid(with_line(msg, text, path, &file, &merged))
        }
        other => other,
    })?;
    config.origins = origins::of(&file, env, pushed);
    for (key, var) in legacy.keys {
        config.origins.insert(key, origins::Origin::Env { var });
    }
    config.legacy_notes = legacy.notes;
    if let Some(e) = config
        .controller
        .endpoint
        .as_ref()
        .filter(|e| e.url.starts_with("http"))
    {
        config.legacy_notes.push(format!(
            "controller.url {} is the Rakkr controller's HTTP API: this agent links to the rakkr-bridge beside it, rakkr://{} (controller.bridge_port)",
            e.url,
            e.address()
        ));
    }
    config.pushed = pushed.cloned();
    config.file_text = text.to_owned();
    Ok(config)
}

/// `over`'s keys laid over `base`'s, section by section.
fn under(base: &toml::Table, over: toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (section, value) in over {
        match (out.get_mut(&section), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => b.extend(o),
            (_, v) => {
                out.insert(section, v);
            }
        }
    }
    out
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
    let path = source.path.display().to_string();
    // A pushed document that no longer fits (the operator changed the
    // file) or cannot be read is set aside with the reason, never a
    // reason not to start.
    let (pushed, mut ignored) = match pushed::load(state_dir) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let mut config = match parse_with(&text, &path, &process_env, state_dir, pushed.as_ref()) {
        Err(e) if pushed.is_some() => {
            let config = parse(&text, &path, &process_env, state_dir)?;
            ignored = Some(format!(
                "pushed configuration version {} is not in force: {e}",
                pushed.as_ref().map_or(0, |p| p.version)
            ));
            config
        }
        other => other?,
    };
    config.pushed_ignored = ignored;
    config.source = found.then(|| source.path.clone());
    Ok(config)
}

/// The process environment (empty values are unset).
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// This configuration with `pushed` in place of its pushed document,
    /// validated whole (the operator's file as read at start, the
    /// environment as it is).
    pub fn with_pushed(&self, pushed: Option<&pushed::Pushed>) -> Result<Config, ConfigError> {
        let path = self
            .source
            .as_ref()
            .map_or_else(|| DEFAULT_PATH.to_owned(), |p| p.display().to_string());
        let mut config = parse_with(
            &self.file_text,
            &path,
            &process_env,
            &self.state_dir,
            pushed,
        )?;
        config.source = self.source.clone();
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
