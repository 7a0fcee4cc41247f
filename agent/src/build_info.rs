//! What this binary is: version, revision, target, date, linked C libraries.

use serde::Serialize;

pub const VERSION: &str = env!("RAKKR_BUILD_VERSION");
pub const GIT_REVISION: &str = env!("RAKKR_BUILD_REV");
pub const TARGET: &str = env!("RAKKR_BUILD_TARGET");
pub const BUILD_DATE: &str = env!("RAKKR_BUILD_DATE");

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    pub version: &'static str,
    /// True for release builds stamped with a `YYYY.MM.DD-N` version.
    pub calendar_version: bool,
    pub git_revision: &'static str,
    pub target: &'static str,
    pub build_date: &'static str,
    pub ffmpeg_version: String,
    pub libavcodec_version: String,
    pub alsa_lib_version: String,
}

fn dotted(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

#[allow(unsafe_code)]
fn ffmpeg_version() -> String {
    // SAFETY: av_version_info returns a pointer to a static NUL-terminated
    // string owned by libavutil (or null); we only read it.
    unsafe {
        let p = ffmpeg_next::ffi::av_version_info();
        if p.is_null() {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

#[allow(unsafe_code)]
fn alsa_lib_version() -> String {
    // SAFETY: snd_asoundlib_version returns a pointer to a static
    // NUL-terminated string inside alsa-lib; we only read it.
    unsafe {
        let p = alsa_sys::snd_asoundlib_version();
        if p.is_null() {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub fn get() -> BuildInfo {
    BuildInfo {
        version: VERSION,
        calendar_version: !VERSION.contains('+'),
        git_revision: GIT_REVISION,
        target: TARGET,
        build_date: BUILD_DATE,
        ffmpeg_version: ffmpeg_version(),
        libavcodec_version: dotted(ffmpeg_next::codec::version()),
        alsa_lib_version: alsa_lib_version(),
    }
}

/// The `--version` text. The first line is `rakkr-recorder-agent <version>`:
/// the update check and Ansible read it.
pub fn version_text() -> String {
    let b = get();
    format!(
        "rakkr-recorder-agent {}{}\nrevision: {}\ntarget: {}\nbuilt: {}\nffmpeg: {} (libavcodec {})\nalsa-lib: {}\nprotocol: {} (ALPN {})\n",
        b.version,
        if b.calendar_version {
            ""
        } else {
            " (development build)"
        },
        b.git_revision,
        b.target,
        b.build_date,
        b.ffmpeg_version,
        b.libavcodec_version,
        b.alsa_lib_version,
        rakkr_protocol::version::SUPPORTED,
        String::from_utf8_lossy(rakkr_protocol::ALPN),
    )
}

/// Whether the test fault `name` is on: only in builds made with
/// `RAKKR_BUILD_TEST_FAULTS=1` (the update tests' "broken release"), and
/// only when `RAKKR_FAULT` names it. Always false in real builds.
pub fn fault(name: &str) -> bool {
    #[cfg(rakkr_test_faults)]
    {
        std::env::var("RAKKR_FAULT").is_ok_and(|v| v.split(',').any(|f| f == name))
    }
    #[cfg(not(rakkr_test_faults))]
    {
        let _ = name;
        false
    }
}
