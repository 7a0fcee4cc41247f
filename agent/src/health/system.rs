//! System signals, observed once a second: disk pressure of the
//! recordings file system and CPU pressure (one-minute load per core);
//! and whether the kernel says the clock is synchronised (`adjtimex`).

use std::path::Path;

use rakkr_protocol::Severity;
use serde::{Deserialize, Serialize};

use super::debounce::Observation;

/// Percent of the file system holding `path` in use, as `df` counts it:
/// used / (used + available to unprivileged writers).
pub fn disk_used_percent(path: &Path) -> Option<f32> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let used = st.blocks().saturating_sub(st.blocks_free()) as f64;
    let avail = st.blocks_available() as f64;
    (used + avail > 0.0).then(|| (100.0 * used / (used + avail)) as f32)
}

/// One-minute load average per online core, from `/proc/loadavg`.
pub fn load_per_core() -> Option<f32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f32 = text.split_whitespace().next()?.parse().ok()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(load / cores as f32)
}

/// `Bad` at the warning or critical level, `Good` below the warning.
pub fn pressure(value: f32, warning: f32, critical: f32) -> Observation {
    if value >= critical {
        Observation::Bad(Severity::Critical)
    } else if value >= warning {
        Observation::Bad(Severity::Warning)
    } else {
        Observation::Good
    }
}

/// The kernel's view of the system clock (`adjtimex`, read only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockSync {
    /// `None`: could not be read (e.g. a sandbox refused `adjtimex`).
    pub synchronized: Option<bool>,
    /// The kernel's estimated error bound, microseconds.
    pub max_error_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// systemd-timesyncd creates this once it has synchronised the clock.
/// See: systemd-timesyncd.service(8)
const TIMESYNCD_SYNCHRONIZED: &str = "/run/systemd/timesync/synchronized";

/// Reads the clock's sync state: synchronised when an NTP client
/// (chrony, ntpd, systemd-timesyncd) disciplines it — `adjtimex` does not
/// return `TIME_ERROR` and `STA_UNSYNC` is clear.
///
/// NOTE: our systemd unit sets `ProtectClock=yes`, which filters
/// `adjtimex` as a whole (EPERM), reading included; there the state comes
/// from systemd-timesyncd's flag file (Debian's default NTP client), and is
/// unknown with another client.
pub fn clock_sync() -> ClockSync {
    let c = clock_sync_adjtimex();
    if c.synchronized.is_none() && Path::new(TIMESYNCD_SYNCHRONIZED).exists() {
        return ClockSync {
            synchronized: Some(true),
            max_error_us: None,
            error: None,
        };
    }
    c
}

#[allow(unsafe_code)]
fn clock_sync_adjtimex() -> ClockSync {
    use nix::libc;
    // SAFETY: `timex` is plain data (all-zero is a valid value); with
    // `modes` 0 adjtimex only reads, writing into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable, correctly sized local.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return ClockSync {
            synchronized: None,
            max_error_us: None,
            error: Some(format!(
                "adjtimex: {} (under the systemd unit, ProtectClock= forbids it; systemd-timesyncd's {TIMESYNCD_SYNCHRONIZED} is used when present)",
                std::io::Error::last_os_error()
            )),
        };
    }
    let synced = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    ClockSync {
        synchronized: Some(synced),
        max_error_us: Some(tx.maxerror as i64),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_levels() {
        assert_eq!(pressure(84.9, 85.0, 95.0), Observation::Good);
        assert_eq!(
            pressure(85.0, 85.0, 95.0),
            Observation::Bad(Severity::Warning)
        );
        assert_eq!(
            pressure(99.0, 85.0, 95.0),
            Observation::Bad(Severity::Critical)
        );
    }

    #[test]
    fn this_machine_has_a_disk_a_load_and_a_clock_state() {
        let p = disk_used_percent(Path::new("/")).expect("statvfs of /");
        assert!((0.0..=100.0).contains(&p), "{p}");
        assert!(load_per_core().is_some_and(|l| l >= 0.0));
        let c = clock_sync();
        assert!(c.synchronized.is_some() || c.error.is_some(), "{c:?}");
    }
}
