//! alsa-lib's configuration on a node that has none.
//!
//! A static binary carries alsa-lib's code but not its data: on a system
//! without `/usr/share/alsa/alsa.conf` (no libasound2 package) alsa-lib
//! knows no `hw:` device at all. Then, and only then, the agent hands
//! alsa-lib an embedded minimal configuration (`alsa-minimal.conf`) through
//! `ALSA_CONFIG_PATH`, from a sealed in-memory file: nothing is written to
//! disk and nothing on disk can replace it. A node's own `/etc/asound.conf`
//! and `~/.asoundrc` are still read.
//!
//! NOTE: called once at the top of `main`, before any thread exists (the
//! environment is process-global).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

/// The embedded configuration.
pub const MINIMAL: &str = include_str!("alsa-minimal.conf");

/// alsa-lib's default top-level configuration file.
const SYSTEM_CONF: &str = "/usr/share/alsa/alsa.conf";

/// Keeps the in-memory file open for the life of the process.
static MEMFD: OnceLock<OwnedFd> = OnceLock::new();

/// What [`ensure`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `ALSA_CONFIG_PATH` names files that exist: left as it is.
    Env,
    /// The system's alsa.conf exists.
    System,
    /// The embedded configuration, at this path.
    Embedded(String),
}

/// Whether the embedded configuration is needed, from what exists.
pub fn needed(env: Option<&str>, exists: impl Fn(&Path) -> bool) -> bool {
    match env.filter(|v| !v.is_empty()) {
        // An inherited path to a parent's in-memory file does not exist here.
        Some(v) => !v.split(':').all(|p| exists(Path::new(p))),
        None => !exists(Path::new(SYSTEM_CONF)),
    }
}

/// Points alsa-lib at the embedded configuration when the node has none.
pub fn ensure() -> std::io::Result<Source> {
    let env = std::env::var("ALSA_CONFIG_PATH").ok();
    if !needed(env.as_deref(), Path::exists) {
        return Ok(if env.is_some_and(|v| !v.is_empty()) {
            Source::Env
        } else {
            Source::System
        });
    }
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create("rakkr-alsa.conf", MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(MINIMAL.as_bytes())?;
    let fd = OwnedFd::from(file);
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let _ = MEMFD.set(fd);
    // SAFETY: called at the top of main before any other thread exists
    // (see the module doc), so nothing reads the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("ALSA_CONFIG_PATH", &path);
    }
    Ok(Source::Embedded(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_only_when_the_node_has_none() {
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        assert!(needed(None, none));
        assert!(!needed(None, all));
        assert!(!needed(Some("/etc/x.conf"), all));
        assert!(
            needed(Some("/proc/self/fd/3"), none),
            "an inherited memfd path"
        );
        assert!(needed(Some(""), none));
    }

    #[test]
    fn the_embedded_config_defines_what_the_agent_opens() {
        for def in ["pcm.hw {", "pcm.plughw {", "ctl.hw {", "/etc/asound.conf"] {
            assert!(MINIMAL.contains(def), "{def}");
        }
    }
}
