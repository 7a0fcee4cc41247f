//! Host facts: name, addresses, OS, storage. Read-only.

use std::path::Path;

use serde::Serialize;

pub fn hostname() -> String {
    sysinfo::System::host_name()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Non-loopback, non-link-local unicast addresses of interfaces that are up.
pub fn ip_addresses() -> Vec<String> {
    let mut out: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
                .filter_map(|a| {
                    let addr = a.address?;
                    let ip: std::net::IpAddr = if let Some(v4) = addr.as_sockaddr_in() {
                        v4.ip().into()
                    } else {
                        addr.as_sockaddr_in6()?.ip().into()
                    };
                    let skip = ip.is_loopback()
                        || ip.is_unspecified()
                        || matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                    (!skip).then(|| ip.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    pub architecture: String,
    pub audio_backends: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    pub uptime_seconds: u64,
}

pub fn runtime() -> Runtime {
    Runtime {
        architecture: std::env::consts::ARCH.to_owned(),
        audio_backends: vec!["alsa"],
        kernel_release: sysinfo::System::kernel_version().filter(|s| !s.is_empty()),
        os_name: sysinfo::System::long_os_version().filter(|s| !s.is_empty()),
        uptime_seconds: sysinfo::System::uptime(),
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    pub recordings_path: String,
    pub exists: bool,
    pub writable: bool,
    /// The filesystem measured (the path, or its nearest existing parent).
    pub measured_path: String,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Space and writability of the recordings path, without writing to it.
pub fn storage(path: &Path) -> Storage {
    let exists = path.is_dir();
    let measured = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned();
    let writable = nix::unistd::access(&measured, nix::unistd::AccessFlags::W_OK).is_ok();
    let (free, total, error) = match nix::sys::statvfs::statvfs(&measured) {
        Ok(s) => {
            let frag = s.fragment_size();
            (
                Some(s.blocks_available() * frag),
                Some(s.blocks() * frag),
                None,
            )
        }
        Err(e) => (
            None,
            None,
            Some(format!("statvfs {}: {e}", measured.display())),
        ),
    };
    Storage {
        recordings_path: path.display().to_string(),
        exists,
        writable,
        measured_path: measured.display().to_string(),
        free_bytes: free,
        total_bytes: total,
        error,
    }
}
