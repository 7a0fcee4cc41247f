//! Recording: ring buffer → de-interleave → one encoder per channel → files,
//! plus the take's manifest.

pub mod encoder;
pub mod take;

/// fsyncs a directory so that new files in it are durable.
pub fn sync_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    rakkr_protocol::fsutil::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))
}
