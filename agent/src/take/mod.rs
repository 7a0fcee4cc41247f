//! Recording: ring buffer → de-interleave → one encoder per channel → files,
//! plus the take's manifest; `recover` repairs takes a crash interrupted.

pub mod calibrate;
pub mod disk;
pub mod encoder;
pub mod flacframe;
pub mod flacscan;
pub mod listing;
pub mod lock;
pub mod manifest;
pub mod md5;
pub mod receipt;
pub mod reclaim;
pub mod recover;
pub mod reserve;
pub mod resume;
pub mod retention;
pub mod riffscan;
pub mod seal;
pub mod segment;
pub mod spread;
pub mod tail;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod full_disk_tests;

/// fsyncs a directory so that new files in it are durable.
pub fn sync_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    rakkr_protocol::fsutil::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))
}
