//! Configuration the controller pushes (`CommandBody::Configure`): a
//! versioned document of `section.key` settings, checked key by key here
//! (what a controller may set at all, and each value's type and bounds),
//! then as a whole with the operator's file and environment (see
//! `super::parse`). Kept in `<state>/pushed-config.json`, replaced
//! atomically; the operator's TOML is never rewritten.
//!
//! Precedence, highest first: environment, operator file, pushed,
//! defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use super::env::{KEYS, Kind};

/// The file in the state directory.
pub const FILE: &str = "pushed-config.json";
/// Longest pushed device name, bytes.
pub const DEVICE_MAX: usize = 128;
/// Longest pushed channel name, bytes, and most names.
pub const CHANNEL_NAME_MAX: usize = 64;
pub const CHANNEL_NAMES_MAX: usize = 512;

/// What a controller may set. Everything else is the operator's.
pub const PUSHABLE: &[(&str, &str)] = &[
    ("capture", "device"),
    ("capture", "channels"),
    ("capture", "sample_rate"),
    ("capture", "format"),
    ("capture", "buffer_frames"),
    ("capture", "segment_seconds"),
    ("capture", "channel_names"),
    ("capture", "pre_roll_seconds"),
    ("capture", "meter_hz"),
    ("capture", "max_takes"),
    ("storage", "min_free_mb"),
    ("storage", "warn_free_mb"),
    ("storage", "stop_free_mb"),
    ("transfer", "max_bytes_per_second"),
    ("retention", "delete_received_after_hours"),
    ("retention", "max_takes_mb"),
    ("retention", "min_free_percent"),
    ("health", "*"),
];

/// Why a known key is never settable from the controller.
fn forbidden(section: &str, key: &str) -> Option<&'static str> {
    Some(match (section, key) {
        ("controller", _) => "the link to the controller is set on the node only",
        ("trust", _) => "trust material is installed on the node only (`trust install`)",
        ("update", _) => {
            "release keys and update policy decide which programs run: set on the node only"
        }
        ("node", _) => "the node's identity and place are set on the node only",
        ("storage", "recordings_path") => "paths are set on the node only",
        ("capture", "realtime" | "realtime_priority") => {
            "scheduling priority is set on the node only"
        }
        ("capture", "resume_within_seconds") => {
            "whether a node starts recording by itself after a power cut is set on the node only"
        }
        ("outbox", _) | ("log", _) => "set on the node only",
        _ => return None,
    })
}

fn pushable(section: &str, key: &str) -> bool {
    PUSHABLE
        .iter()
        .any(|(s, k)| *s == section && (*k == key || *k == "*"))
}

/// A pushed document that passed the key-by-key checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    pub version: u64,
    /// Sections of keys, as in the config file.
    pub settings: Table,
}

/// Why a pushed document was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PushError {
    #[error("the document is not a JSON object of sections: {0}")]
    Shape(String),
    #[error(
        "{key} cannot be set from the controller: {why}; the document was refused and nothing changed"
    )]
    Forbidden { key: String, why: &'static str },
    #[error(
        "{key} is not a setting of this agent (programs and command lines are never settable from the controller); the document was refused and nothing changed"
    )]
    Unknown { key: String },
    #[error("{key}: {detail}; the document was refused and nothing changed")]
    Value { key: String, detail: String },
}

impl Pushed {
    /// Checks the document `json` (a JSON object of sections of keys).
    pub fn parse(version: u64, json: &str) -> Result<Self, PushError> {
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| PushError::Shape(e.to_string()))?;
        let serde_json::Value::Object(sections) = doc else {
            return Err(PushError::Shape("the top level is not an object".into()));
        };
        let mut settings = Table::new();
        for (section, keys) in sections {
            let serde_json::Value::Object(keys) = keys else {
                return Err(PushError::Shape(format!("{section} is not an object")));
            };
            let mut out = Table::new();
            for (key, value) in keys {
                let name = format!("{section}.{key}");
                let Some((_, _, kind)) = KEYS.iter().find(|(s, k, _)| *s == section && *k == key)
                else {
                    return Err(PushError::Unknown { key: name });
                };
                if let Some(why) = forbidden(&section, &key) {
                    return Err(PushError::Forbidden { key: name, why });
                }
                if !pushable(&section, &key) {
                    return Err(PushError::Forbidden {
                        key: name,
                        why: "set on the node only",
                    });
                }
                let v = typed(&name, &value, *kind)?;
                check(&name, &v)?;
                out.insert(key, v);
            }
            if !out.is_empty() {
                settings.insert(section, Value::Table(out));
            }
        }
        Ok(Self { version, settings })
    }

    /// The setting `section.key`, if the document has it.
    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        self.settings.get(section)?.get(key)
    }

    /// `section.key` of every setting, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .settings
            .iter()
            .flat_map(|(s, t)| {
                t.as_table()
                    .into_iter()
                    .flat_map(move |t| t.keys().map(move |k| format!("{s}.{k}")))
            })
            .collect();
        keys.sort();
        keys
    }
}

fn typed(key: &str, v: &serde_json::Value, kind: Kind) -> Result<Value, PushError> {
    let bad = |what: &str| PushError::Value {
        key: key.to_owned(),
        detail: format!("{v} is not {what}"),
    };
    Ok(match kind {
        Kind::Str => Value::String(v.as_str().ok_or_else(|| bad("a string"))?.to_owned()),
        Kind::Int => Value::Integer(
            v.as_u64()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| bad("a whole number ≥ 0"))?,
        ),
        Kind::Float => Value::Float(v.as_f64().ok_or_else(|| bad("a number"))?),
        Kind::List => Value::Array(
            v.as_array()
                .ok_or_else(|| bad("a list of strings"))?
                .iter()
                .map(|s| s.as_str().map(|s| Value::String(s.to_owned())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a list of strings"))?,
        ),
        Kind::Bool => Value::Boolean(v.as_bool().ok_or_else(|| bad("true or false"))?),
        Kind::Map => Value::Table(
            v.as_object()
                .ok_or_else(|| bad("an object of whole numbers"))?
                .iter()
                .map(|(k, n)| n.as_i64().map(|n| (k.clone(), Value::Integer(n))))
                .collect::<Option<toml::Table>>()
                .ok_or_else(|| bad("an object of whole numbers"))?,
        ),
    })
}

/// Bounds a pushed value has beyond the config file's own checks.
fn check(key: &str, v: &Value) -> Result<(), PushError> {
    let refuse = |detail: String| {
        Err(PushError::Value {
            key: key.to_owned(),
            detail,
        })
    };
    match (key, v) {
        // NOTE: an ALSA PCM name can define a plugin inline, and the
        // `file` plugin runs a program for a name starting with `|`: only
        // plain names and globs come from the controller.
        // See: https://www.alsa-project.org/alsa-doc/alsa-lib/pcm_plugins.html
        ("capture.device", Value::String(d)) => {
            let ok = |c: char| c.is_ascii_alphanumeric() || "_:=,.*?-".contains(c);
            if d.len() > DEVICE_MAX || !d.chars().all(ok) {
                return refuse(format!(
                    "{d:?} is not a device name: at most {DEVICE_MAX} of A-Z a-z 0-9 _ : = , . * ? -"
                ));
            }
        }
        ("capture.channel_names", Value::Array(names)) => {
            if names.len() > CHANNEL_NAMES_MAX {
                return refuse(format!(
                    "{} names; at most {CHANNEL_NAMES_MAX}",
                    names.len()
                ));
            }
            for n in names.iter().filter_map(Value::as_str) {
                if n.len() > CHANNEL_NAME_MAX || n.chars().any(char::is_control) {
                    return refuse(format!(
                        "{n:?}: a name is at most {CHANNEL_NAME_MAX} bytes without control characters"
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the pushed document kept in `state_dir` (`None`: none kept).
pub fn load(state_dir: &Path) -> anyhow::Result<Option<Pushed>> {
    use anyhow::Context;
    let path = path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading pushed configuration {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("reading pushed configuration {}", path.display()))
        }
    }
}

/// Keeps `pushed` in `state_dir`, replacing the previous one atomically.
pub fn save(state_dir: &Path, pushed: &Pushed) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = path(state_dir);
    let bytes = serde_json::to_vec_pretty(pushed).context("encoding pushed configuration")?;
    rakkr_protocol::fsutil::atomic_write(&path, &bytes, 0o600)
        .with_context(|| format!("writing pushed configuration {}", path.display()))
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_of_settable_keys_is_kept_typed() {
        let p = Pushed::parse(
            4,
            r#"{"capture": {"device": "hw:CARD=X32,DEV=0", "channels": 16,
                "channel_names": ["Kick", "Snare"]}, "health": {"clip_dbfs": -0.5},
                "retention": {}}"#,
        )
        .unwrap();
        assert_eq!(p.version, 4);
        assert_eq!(
            p.get("capture", "channels"),
            Some(&Value::Integer(16)),
            "{p:?}"
        );
        assert_eq!(p.get("health", "clip_dbfs"), Some(&Value::Float(-0.5)));
        assert_eq!(
            p.keys(),
            [
                "capture.channel_names",
                "capture.channels",
                "capture.device",
                "health.clip_dbfs"
            ]
        );
    }

    #[test]
    fn forbidden_and_unknown_keys_refuse_the_whole_document_naming_the_key() {
        let e = |doc: &str| Pushed::parse(1, doc).unwrap_err();
        for (doc, key) in [
            (
                r#"{"controller": {"url": "rakkr://evil"}}"#,
                "controller.url",
            ),
            (r#"{"trust": {"cert_path": "/tmp/x"}}"#, "trust.cert_path"),
            (
                r#"{"update": {"trusted_keys": ["k"]}}"#,
                "update.trusted_keys",
            ),
            (
                r#"{"storage": {"recordings_path": "/etc"}}"#,
                "storage.recordings_path",
            ),
            (r#"{"capture": {"realtime": "always"}}"#, "capture.realtime"),
            (r#"{"node": {"id": "other"}}"#, "node.id"),
        ] {
            let err = e(doc);
            assert!(matches!(err, PushError::Forbidden { .. }), "{err}");
            assert!(err.to_string().starts_with(key), "{err}");
        }
        let err = e(r#"{"capture": {"channels": 2, "command": "arecord | nc"}}"#);
        assert_eq!(
            err,
            PushError::Unknown {
                key: "capture.command".into()
            }
        );
        assert!(err.to_string().contains("never settable"), "{err}");
    }

    #[test]
    fn values_are_typed_and_device_names_cannot_carry_a_program() {
        let e = |doc: &str| Pushed::parse(1, doc).unwrap_err().to_string();
        assert!(e(r#"{"capture": {"channels": "32"}}"#).contains("capture.channels"));
        assert!(e(r#"{"capture": {"channels": -1}}"#).contains("whole number"));
        assert!(e(r#"{"capture": {"channel_names": ["a", 1]}}"#).contains("list of strings"));
        for device in [
            r#"file:'|sh -c id'"#,
            "{type file}",
            "hw:0 ; rm",
            &"x".repeat(DEVICE_MAX + 1),
        ] {
            let doc = serde_json::json!({"capture": {"device": device}}).to_string();
            assert!(e(&doc).contains("not a device name"), "{device}");
        }
        let long = serde_json::json!({"capture": {"channel_names": ["x".repeat(65)]}});
        assert!(e(&long.to_string()).contains("at most 64"));
        assert!(e("[1]").contains("not an object"));
        assert!(e(r#"{"capture": 3}"#).contains("capture is not an object"));
    }

    #[test]
    fn kept_in_the_state_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let p = Pushed::parse(9, r#"{"transfer": {"max_bytes_per_second": 1000}}"#).unwrap();
        save(dir.path(), &p).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(p));
        std::fs::write(path(dir.path()), "{").unwrap();
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(err.contains(FILE), "{err}");
    }
}
