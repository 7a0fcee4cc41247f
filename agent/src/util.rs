//! Small helpers shared by several modules.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 / ISO 8601 UTC timestamp of a Unix time in seconds.
pub fn iso8601(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_iso8601() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Streams a file through SHA-256 (constant memory): (hex digest, bytes read).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    // NOTE: aligned, or the kernel's copy into it costs several times more
    // (see `aligned`).
    let mut buf = crate::aligned::Aligned::<u8>::new(1 << 16);
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(h.finalize()), total))
}

/// When running as root (Ansible, an operator with sudo), gives `path` to
/// the owner of `like` (a directory the service user owns), so that the
/// daemon, which runs as that user, can still read and replace it. A no-op
/// for anyone else, who cannot give files away anyway.
pub fn give_like(path: &std::path::Path, like: &std::path::Path) -> std::io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    give_to(path, owner_of(like)?)
}

/// (uid, gid) of `path`.
pub fn owner_of(path: &std::path::Path) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.uid(), m.gid()))
}

/// Gives `path` (a link itself, not its target) to `owner` when running as
/// root; a no-op otherwise (see [`give_like`]).
pub fn give_to(path: &std::path::Path, owner: (u32, u32)) -> std::io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_of_epoch() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00Z");
    }
}
