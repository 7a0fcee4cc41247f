//! `RAKKR_*` environment variables: every config key has one. Names follow
//! `RAKKR_<SECTION>_<KEY>`; where today's Rakkr agent already uses a name for
//! the same meaning, that name is kept (listed in `ALIASES`).

use toml::{Table, Value};

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    /// Comma-separated list of strings.
    List,
    Float,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
    /// Comma-separated `KEY=INTEGER` pairs (a table of integers).
    Map,
}

/// Every config key: (section, key, type). The env name is derived.
pub(crate) const KEYS: &[(&str, &str, Kind)] = &[
    ("node", "id", Kind::Str),
    ("node", "alias", Kind::Str),
    ("node", "site", Kind::Str),
    ("node", "room", Kind::Str),
    ("node", "building", Kind::Str),
    ("node", "floor", Kind::Str),
    ("node", "tags", Kind::List),
    ("controller", "url", Kind::Str),
    ("controller", "bridge_port", Kind::Int),
    ("controller", "server_name", Kind::Str),
    ("controller", "ca_cert_path", Kind::Str),
    ("controller", "heartbeat_seconds", Kind::Int),
    ("controller", "connect_timeout_seconds", Kind::Int),
    ("controller", "backoff_initial_ms", Kind::Int),
    ("controller", "backoff_max_ms", Kind::Int),
    ("trust", "cert_path", Kind::Str),
    ("trust", "key_path", Kind::Str),
    ("storage", "recordings_path", Kind::Str),
    ("storage", "min_free_mb", Kind::Int),
    ("storage", "warn_free_mb", Kind::Int),
    ("storage", "stop_free_mb", Kind::Int),
    ("capture", "device", Kind::Str),
    ("capture", "channels", Kind::Int),
    ("capture", "sample_rate", Kind::Int),
    ("capture", "format", Kind::Str),
    ("capture", "buffer_frames", Kind::Int),
    ("capture", "segment_seconds", Kind::Int),
    ("capture", "channel_names", Kind::List),
    ("capture", "pre_roll_seconds", Kind::Int),
    ("capture", "meter_hz", Kind::Int),
    ("capture", "max_takes", Kind::Int),
    ("capture", "resume_within_seconds", Kind::Int),
    ("capture", "realtime", Kind::Str),
    ("capture", "realtime_priority", Kind::Int),
    ("outbox", "max_events", Kind::Int),
    ("log", "level", Kind::Str),
    ("update", "probation_seconds", Kind::Int),
    ("update", "stable_seconds", Kind::Int),
    ("update", "max_starts", Kind::Int),
    ("update", "trusted_keys", Kind::List),
    ("transfer", "max_bytes_per_second", Kind::Int),
    ("retention", "delete_received_after_hours", Kind::Int),
    ("retention", "max_takes_mb", Kind::Int),
    ("retention", "min_free_percent", Kind::Int),
    ("health", "raise_after", Kind::Int),
    ("health", "clear_after", Kind::Int),
    ("health", "clip_dbfs", Kind::Float),
    ("health", "flatline_dbfs", Kind::Float),
    ("health", "low_signal_dbfs", Kind::Float),
    ("health", "correlation", Kind::Float),
    ("health", "disk_warning_percent", Kind::Int),
    ("health", "disk_critical_percent", Kind::Int),
    ("health", "cpu_warning_per_core", Kind::Float),
    ("health", "cpu_critical_per_core", Kind::Float),
    ("health", "clock_skew_warning_seconds", Kind::Float),
    ("health", "clock_skew_recover_seconds", Kind::Float),
    ("console", "address", Kind::Str),
    ("console", "discovery", Kind::Bool),
    ("console", "discovery_address", Kind::Str),
    ("console", "model", Kind::Str),
    ("console", "routing", Kind::Map),
    ("console", "lost_after_seconds", Kind::Int),
];

/// Names kept from today's agent where the derived name would differ.
const ALIASES: &[(&str, &str, &str)] =
    &[("controller", "heartbeat_seconds", "RAKKR_HEARTBEAT_SECONDS")];

/// The environment variable for a key.
pub(crate) fn var_name(section: &str, key: &str) -> String {
    ALIASES
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, v)| (*v).to_owned())
        .unwrap_or_else(|| format!("RAKKR_{}_{}", section.to_uppercase(), key.to_uppercase()))
}

fn typed(var: &str, raw: &str, kind: Kind) -> Result<Value, ConfigError> {
    let bad = |expected: &str| ConfigError::Env {
        var: var.to_owned(),
        value: raw.to_owned(),
        expected: expected.to_owned(),
    };
    Ok(match kind {
        Kind::Str => Value::String(raw.to_owned()),
        Kind::Int => Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        Kind::Float => Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Kind::Bool => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::Map => {
            let mut t = Table::new();
            for pair in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad("KEY=NUMBER pairs separated by commas (e.g. 1=17,2=18)"))?;
                let v: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| bad("KEY=NUMBER pairs separated by commas (e.g. 1=17,2=18)"))?;
                t.insert(k.trim().to_owned(), Value::Integer(v));
            }
            Value::Table(t)
        }
    })
}

/// Overlays set variables onto the parsed file; variables win.
pub(crate) fn overlay(
    table: &mut Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (section, key, kind) in KEYS {
        let var = var_name(section, key);
        let Some(raw) = env(&var) else { continue };
        let value = typed(&var, &raw, *kind)?;
        let entry = table
            .entry((*section).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => {
                t.insert((*key).to_owned(), value);
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "[{section}] in the config file is not a table, so {var} cannot be applied"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_and_legacy_names() {
        assert_eq!(
            var_name("capture", "sample_rate"),
            "RAKKR_CAPTURE_SAMPLE_RATE"
        );
        assert_eq!(var_name("controller", "url"), "RAKKR_CONTROLLER_URL");
        assert_eq!(
            var_name("controller", "heartbeat_seconds"),
            "RAKKR_HEARTBEAT_SECONDS"
        );
    }

    #[test]
    fn bad_integer_names_variable_and_value() {
        let mut t = Table::new();
        let env = |v: &str| (v == "RAKKR_CAPTURE_CHANNELS").then(|| "lots".to_owned());
        let err = overlay(&mut t, &env).unwrap_err().to_string();
        assert!(
            err.contains("RAKKR_CAPTURE_CHANNELS") && err.contains("lots"),
            "{err}"
        );
    }
}
