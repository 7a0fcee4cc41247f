//! `[health]`: the thresholds and hysteresis of the health signals (see
//! `health/`). Defaults are today's Rakkr agent's, so a controller's
//! dashboards mean the same on either agent.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) raise_after: Option<u32>,
    pub(super) clear_after: Option<u32>,
    pub(super) clip_dbfs: Option<f64>,
    pub(super) flatline_dbfs: Option<f64>,
    pub(super) low_signal_dbfs: Option<f64>,
    pub(super) correlation: Option<f64>,
    pub(super) disk_warning_percent: Option<u8>,
    pub(super) disk_critical_percent: Option<u8>,
    pub(super) cpu_warning_per_core: Option<f64>,
    pub(super) cpu_critical_per_core: Option<f64>,
    pub(super) clock_skew_warning_seconds: Option<f64>,
    pub(super) clock_skew_recover_seconds: Option<f64>,
}

/// Resolved `[health]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Consecutive bad observations (seconds) before a signal is raised.
    pub raise_after: u32,
    /// Consecutive good observations before it is cleared.
    pub clear_after: u32,
    /// A channel peaking at or above this clips.
    pub clip_dbfs: f32,
    /// Every channel's RMS at or below this: flatline.
    pub flatline_dbfs: f32,
    /// The loudest channel's RMS at or below this: low signal.
    pub low_signal_dbfs: f32,
    /// |r| of two adjacent channels at or above this: correlated pair.
    pub correlation: f32,
    pub disk_warning_percent: u8,
    pub disk_critical_percent: u8,
    pub cpu_warning_per_core: f32,
    pub cpu_critical_per_core: f32,
    /// Raised above this many seconds of skew...
    pub clock_skew_warning_seconds: f32,
    /// ...and cleared at or below this many.
    pub clock_skew_recover_seconds: f32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            raise_after: 3,
            clear_after: 3,
            clip_dbfs: -1.0,
            flatline_dbfs: -120.0,
            low_signal_dbfs: -55.0,
            correlation: 0.98,
            disk_warning_percent: 85,
            disk_critical_percent: 95,
            cpu_warning_per_core: 2.0,
            cpu_critical_per_core: 4.0,
            clock_skew_warning_seconds: 5.0,
            clock_skew_recover_seconds: 2.0,
        }
    }
}

/// Longest hysteresis, in observations (seconds).
const OBSERVATIONS_MAX: u32 = 600;

fn within(key: &str, v: f64, lo: f64, hi: f64) -> Result<f32, ConfigError> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v as f32)
    } else {
        Err(ConfigError::Invalid(format!(
            "health.{key} {v} is outside {lo}..={hi}"
        )))
    }
}

pub(super) fn resolve(h: RawHealth) -> Result<HealthConfig, ConfigError> {
    let d = HealthConfig::default();
    let count = |key: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
        n @ 1..=OBSERVATIONS_MAX => Ok(n),
        n => Err(ConfigError::Invalid(format!(
            "health.{key} {n} is outside 1..={OBSERVATIONS_MAX}"
        ))),
    };
    let f = |key: &str, v: Option<f64>, default: f32, lo: f64, hi: f64| match v {
        Some(v) => within(key, v, lo, hi),
        None => Ok(default),
    };
    let c = HealthConfig {
        raise_after: count("raise_after", h.raise_after, d.raise_after)?,
        clear_after: count("clear_after", h.clear_after, d.clear_after)?,
        clip_dbfs: f("clip_dbfs", h.clip_dbfs, d.clip_dbfs, -60.0, 0.0)?,
        flatline_dbfs: f(
            "flatline_dbfs",
            h.flatline_dbfs,
            d.flatline_dbfs,
            -160.0,
            -40.0,
        )?,
        low_signal_dbfs: f(
            "low_signal_dbfs",
            h.low_signal_dbfs,
            d.low_signal_dbfs,
            -150.0,
            0.0,
        )?,
        correlation: f("correlation", h.correlation, d.correlation, 0.5, 1.0)?,
        disk_warning_percent: h.disk_warning_percent.unwrap_or(d.disk_warning_percent),
        disk_critical_percent: h.disk_critical_percent.unwrap_or(d.disk_critical_percent),
        cpu_warning_per_core: f(
            "cpu_warning_per_core",
            h.cpu_warning_per_core,
            d.cpu_warning_per_core,
            0.1,
            1000.0,
        )?,
        cpu_critical_per_core: f(
            "cpu_critical_per_core",
            h.cpu_critical_per_core,
            d.cpu_critical_per_core,
            0.1,
            1000.0,
        )?,
        clock_skew_warning_seconds: f(
            "clock_skew_warning_seconds",
            h.clock_skew_warning_seconds,
            d.clock_skew_warning_seconds,
            0.01,
            86_400.0,
        )?,
        clock_skew_recover_seconds: f(
            "clock_skew_recover_seconds",
            h.clock_skew_recover_seconds,
            d.clock_skew_recover_seconds,
            0.0,
            86_400.0,
        )?,
    };
    let order = |lo_key: &str, lo: f32, hi_key: &str, hi: f32, strict: bool| {
        if lo > hi || (strict && lo == hi) {
            Err(ConfigError::Invalid(format!(
                "health.{lo_key} ({lo}) must be below health.{hi_key} ({hi})"
            )))
        } else {
            Ok(())
        }
    };
    for (key, p) in [
        ("disk_warning_percent", c.disk_warning_percent),
        ("disk_critical_percent", c.disk_critical_percent),
    ] {
        if !(1..=100).contains(&p) {
            return Err(ConfigError::Invalid(format!(
                "health.{key} {p} is outside 1..=100"
            )));
        }
    }
    order(
        "disk_warning_percent",
        f32::from(c.disk_warning_percent),
        "disk_critical_percent",
        f32::from(c.disk_critical_percent),
        false,
    )?;
    order(
        "cpu_warning_per_core",
        c.cpu_warning_per_core,
        "cpu_critical_per_core",
        c.cpu_critical_per_core,
        false,
    )?;
    order(
        "flatline_dbfs",
        c.flatline_dbfs,
        "low_signal_dbfs",
        c.low_signal_dbfs,
        true,
    )?;
    order(
        "clock_skew_recover_seconds",
        c.clock_skew_recover_seconds,
        "clock_skew_warning_seconds",
        c.clock_skew_warning_seconds,
        true,
    )?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_todays_agents() {
        let c = resolve(RawHealth::default()).unwrap();
        assert_eq!(c, HealthConfig::default());
        assert_eq!((c.raise_after, c.clear_after), (3, 3));
    }

    #[test]
    fn out_of_range_and_inverted_thresholds_are_named() {
        let cases: [(RawHealth, &str); 5] = [
            (
                RawHealth {
                    raise_after: Some(0),
                    ..Default::default()
                },
                "health.raise_after 0",
            ),
            (
                RawHealth {
                    clip_dbfs: Some(3.0),
                    ..Default::default()
                },
                "health.clip_dbfs 3",
            ),
            (
                RawHealth {
                    disk_warning_percent: Some(96),
                    ..Default::default()
                },
                "health.disk_warning_percent (96) must be below",
            ),
            (
                RawHealth {
                    clock_skew_recover_seconds: Some(5.0),
                    ..Default::default()
                },
                "health.clock_skew_recover_seconds (5) must be below",
            ),
            (
                RawHealth {
                    correlation: Some(f64::NAN),
                    ..Default::default()
                },
                "health.correlation NaN",
            ),
        ];
        for (raw, want) in cases {
            let e = resolve(raw).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }
}
