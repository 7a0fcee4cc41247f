//! Where each effective setting comes from, and its value as in force:
//! what `check` and `status --json` show key by key.

use serde::{Deserialize, Serialize};

use super::env::{KEYS, var_name};
use super::pushed::Pushed;
use super::{Config, DeviceSelector, Realtime};

/// The layer a key's value comes from (highest precedence first:
/// environment, operator file, pushed, default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "from")]
pub enum Origin {
    Env { var: String },
    File,
    Pushed { version: u64 },
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env { var } => write!(f, "environment {var}"),
            Self::File => f.write_str("operator file"),
            Self::Pushed { version } => write!(f, "pushed by the controller (version {version})"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// The configuration in force, for `status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// The pushed document in force, if any.
    pub pushed_version: Option<u64>,
    /// Why a kept pushed document is not in force, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_ignored: Option<String>,
    pub settings: Vec<Setting>,
}

impl Config {
    pub fn status(&self) -> ConfigStatus {
        ConfigStatus {
            pushed_version: self.pushed.as_ref().map(|p| p.version),
            pushed_ignored: self.pushed_ignored.clone(),
            settings: self.settings(),
        }
    }
}

/// Each key's origin (`section.key` → origin).
pub(super) fn of(
    file: &toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
    pushed: Option<&Pushed>,
) -> std::collections::BTreeMap<String, Origin> {
    KEYS.iter()
        .map(|(section, key, _)| {
            let var = var_name(section, key);
            let origin = if env(&var).is_some() {
                Origin::Env { var }
            } else if file.get(*section).and_then(|s| s.get(*key)).is_some() {
                Origin::File
            } else if let Some(p) = pushed.filter(|p| p.get(section, key).is_some()) {
                Origin::Pushed { version: p.version }
            } else {
                Origin::Default
            };
            (format!("{section}.{key}"), origin)
        })
        .collect()
}

/// One effective setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

fn opt<T: std::fmt::Display>(v: Option<T>, none: &str) -> String {
    v.map_or_else(|| none.to_owned(), |v| v.to_string())
}

fn list(v: &[String]) -> String {
    v.join(",")
}

impl Config {
    /// Every key's value as in force, with its origin, in the order of
    /// the key table. Values read as in the file (seconds, MB, …).
    pub fn settings(&self) -> Vec<Setting> {
        const MB: u64 = 1 << 20;
        let c = &self.capture;
        let h = &self.health;
        let n = &self.node;
        let ctl = &self.controller;
        let secs = |d: std::time::Duration| d.as_secs().to_string();
        let value = |key: &str| -> String {
            match key {
                "node.id" => opt(n.id.as_ref(), "(the certificate's name)"),
                "node.alias" => opt(n.alias.as_ref(), "(none)"),
                "node.site" => n.site.clone(),
                "node.room" => n.room.clone(),
                "node.building" => opt(n.building.as_ref(), "(none)"),
                "node.floor" => opt(n.floor.as_ref(), "(none)"),
                "node.tags" => list(&n.tags),
                "controller.url" => opt(ctl.endpoint.as_ref().map(|e| &e.url), "(none)"),
                "controller.bridge_port" => ctl.bridge_port.to_string(),
                "controller.server_name" => {
                    opt(ctl.endpoint.as_ref().map(|e| &e.server_name), "(none)")
                }
                "controller.ca_cert_path" => self.trust.ca_bundle.display().to_string(),
                "controller.heartbeat_seconds" => secs(ctl.heartbeat),
                "controller.connect_timeout_seconds" => secs(ctl.connect_timeout),
                "controller.backoff_initial_ms" => ctl.backoff_initial.as_millis().to_string(),
                "controller.backoff_max_ms" => ctl.backoff_max.as_millis().to_string(),
                "trust.cert_path" => self.trust.cert.display().to_string(),
                "trust.key_path" => self.trust.key.display().to_string(),
                "storage.recordings_path" => self.recordings_path.display().to_string(),
                "storage.min_free_mb" => (self.disk.min_free_bytes / MB).to_string(),
                "storage.warn_free_mb" => (self.disk.warn_free_bytes / MB).to_string(),
                "storage.stop_free_mb" => (self.disk.stop_free_bytes / MB).to_string(),
                "capture.device" => match &c.device {
                    DeviceSelector::Auto => "auto".into(),
                    DeviceSelector::Exact(d) | DeviceSelector::Pattern(d) => d.clone(),
                },
                "capture.channels" => opt(c.channels, "(all the device offers)"),
                "capture.sample_rate" => c.sample_rate.to_string(),
                "capture.format" => opt(c.legacy_sample_format.as_ref(), c.format.extension()),
                "capture.buffer_frames" => opt(c.buffer_frames, "1024"),
                "capture.segment_seconds" => secs(c.segment),
                "capture.channel_names" => list(&c.channel_names),
                "capture.pre_roll_seconds" => secs(c.pre_roll),
                "capture.meter_hz" => c.meter_hz.to_string(),
                "capture.max_takes" => c.max_takes.to_string(),
                "capture.resume_within_seconds" => secs(c.resume_within),
                "capture.realtime" => match c.realtime {
                    Realtime::Off => "off".into(),
                    Realtime::Hardware(_) => "auto".into(),
                    Realtime::Always(_) => "always".into(),
                },
                "capture.realtime_priority" => match c.realtime {
                    Realtime::Off => "(off)".into(),
                    Realtime::Hardware(p) | Realtime::Always(p) => p.to_string(),
                },
                "outbox.max_events" => self.outbox_max_events.to_string(),
                "log.level" => opt(self.log_level.as_ref(), "info"),
                "update.probation_seconds" => secs(self.update.probation),
                "update.stable_seconds" => secs(self.update.stable),
                "update.max_starts" => self.update.max_starts.to_string(),
                "update.trusted_keys" => format!("({} keys)", self.update.trusted_keys.len()),
                "transfer.max_bytes_per_second" => self.transfer_max_bytes_per_second.to_string(),
                "retention.delete_received_after_hours" => opt(
                    self.retention
                        .delete_received_after
                        .map(|d| d.as_secs() / 3600),
                    "(never)",
                ),
                "retention.max_takes_mb" => {
                    opt(self.retention.max_takes_bytes.map(|b| b / MB), "(no cap)")
                }
                "retention.min_free_percent" => opt(self.retention.min_free_percent, "(none)"),
                "health.raise_after" => h.raise_after.to_string(),
                "health.clear_after" => h.clear_after.to_string(),
                "health.clip_dbfs" => h.clip_dbfs.to_string(),
                "health.flatline_dbfs" => h.flatline_dbfs.to_string(),
                "health.low_signal_dbfs" => h.low_signal_dbfs.to_string(),
                "health.correlation" => h.correlation.to_string(),
                "health.disk_warning_percent" => h.disk_warning_percent.to_string(),
                "health.disk_critical_percent" => h.disk_critical_percent.to_string(),
                "health.cpu_warning_per_core" => h.cpu_warning_per_core.to_string(),
                "health.cpu_critical_per_core" => h.cpu_critical_per_core.to_string(),
                "health.clock_skew_warning_seconds" => h.clock_skew_warning_seconds.to_string(),
                "health.clock_skew_recover_seconds" => h.clock_skew_recover_seconds.to_string(),
                "console.address" => opt(
                    self.console.address.as_ref().map(|(h, p)| match p {
                        Some(p) => format!("{h}:{p}"),
                        None => h.clone(),
                    }),
                    "(none)",
                ),
                "console.discovery" => self.console.discovery.to_string(),
                "console.discovery_address" => self.console.discovery_address.clone(),
                "console.model" => opt(self.console.family.map(|f| f.as_str()), "auto"),
                "console.routing" => {
                    if self.console.routing.is_empty() {
                        "(the console's)".into()
                    } else {
                        (self.console.routing.iter())
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                }
                "console.lost_after_seconds" => secs(self.console.lost_after),
                // NOTE: the key table and this list are checked against
                // each other (`every_key_has_an_effective_value`).
                _ => String::new(),
            }
        };
        KEYS.iter()
            .map(|(section, key, _)| {
                let k = format!("{section}.{key}");
                Setting {
                    value: value(&k),
                    origin: self.origins.get(&k).cloned().unwrap_or(Origin::Default),
                    key: k,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_an_effective_value() {
        let dir = tempfile::tempdir().unwrap();
        let c = super::super::parse("", "t", &|_| None, dir.path()).unwrap();
        let missing: Vec<String> = c
            .settings()
            .into_iter()
            .filter(|s| {
                s.value.is_empty() && s.key != "node.tags" && s.key != "capture.channel_names"
            })
            .map(|s| s.key)
            .collect();
        assert!(missing.is_empty(), "no effective value for {missing:?}");
    }

    #[test]
    fn environment_beats_file_beats_pushed_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = Pushed::parse(
            7,
            r#"{"capture": {"channels": 8, "sample_rate": 44100, "segment_seconds": 60,
                "pre_roll_seconds": 2}}"#,
        )
        .unwrap();
        let env = |v: &str| (v == "RAKKR_CAPTURE_CHANNELS").then(|| "2".to_owned());
        let text = "[capture]\nchannels = 4\nsample_rate = 96000\n";
        let c = super::super::parse_with(text, "t", &env, dir.path(), Some(&pushed)).unwrap();
        assert_eq!(c.capture.channels, Some(2));
        assert_eq!(c.capture.sample_rate, 96_000);
        assert_eq!(c.capture.segment, std::time::Duration::from_secs(60));
        let origin = |k: &str| c.origins[k].clone();
        assert_eq!(
            origin("capture.channels"),
            Origin::Env {
                var: "RAKKR_CAPTURE_CHANNELS".into()
            }
        );
        assert_eq!(origin("capture.sample_rate"), Origin::File);
        assert_eq!(
            origin("capture.segment_seconds"),
            Origin::Pushed { version: 7 }
        );
        assert_eq!(origin("capture.device"), Origin::Default);
        let s = c.settings();
        let pre = s
            .iter()
            .find(|s| s.key == "capture.pre_roll_seconds")
            .unwrap();
        assert_eq!(
            (pre.value.as_str(), &pre.origin),
            ("2", &Origin::Pushed { version: 7 })
        );
    }

    #[test]
    fn a_pushed_value_the_rules_refuse_makes_the_whole_config_invalid_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = Pushed::parse(1, r#"{"capture": {"channels": 600}}"#).unwrap();
        let err = super::super::parse_with("", "t", &|_| None, dir.path(), Some(&pushed))
            .unwrap_err()
            .to_string();
        assert!(err.contains("capture.channels 600"), "{err}");
    }
}
