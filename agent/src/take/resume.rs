//! Continuing a take that a crash or a power cut interrupted.
//!
//! At start, recovery repairs every take that was still recording (see
//! `recover.rs`). The newest of them, if its audio was last written within
//! `capture.resume_within_seconds`, goes on by itself as a new take as soon
//! as the device is open: same channels, format and segment length, id
//! `<take>-r2` (`<take>-r3` after `<take>-r2`, …), its manifest naming the
//! take it `continues`. Only the audio between the last sample recovery
//! kept and the first of the new take is lost.
//!
//! NOTE: a new take, not more segments of the old one: after recovery the
//! old take's manifest is final (its files are hashed, may already be
//! received and deleted), and a take directory has one writer for its life.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::take::encoder::Container;
use crate::take::listing::valid_id;
use crate::take::recover::Recovered;

/// Ids tried for the continuing take before giving up.
const IDS_MAX: u32 = 100;

/// The take that goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub take_id: String,
    /// The interrupted take it continues.
    pub continues: String,
    pub channels: u16,
    pub container: Container,
    /// The old take's longest segment (`None`: not recorded, the default).
    pub segment: Option<Duration>,
    /// Its device channels, when not the first N (empty: the first N).
    pub device_channels: Vec<u16>,
    pub job_id: Option<String>,
}

/// The take to start once the device is open, if one should go on.
pub fn plan(recovered: &[Recovered], within: Duration, now: SystemTime) -> Option<Resume> {
    if within.is_zero() {
        return None;
    }
    let (r, written) = recovered
        .iter()
        .filter_map(|r| last_write(r).map(|t| (r, t)))
        .max_by_key(|(_, t)| *t)?;
    let age = now.duration_since(written).unwrap_or_default();
    if age > within {
        tracing::info!(take = %r.manifest.take_id, age_s = age.as_secs(), "an interrupted take is too old to continue by itself (capture.resume_within_seconds)");
        return None;
    }
    let m = &r.manifest;
    let output = r.dir.parent()?.to_path_buf();
    let take_id = next_free_id(&m.take_id, &output)?;
    let segment = (m.segment_frames > 0 && m.sample_rate > 0)
        .then(|| Duration::from_secs_f64(m.segment_frames as f64 / f64::from(m.sample_rate)));
    Some(Resume {
        take_id,
        continues: m.take_id.clone(),
        channels: m.channels,
        container: m.format,
        segment,
        device_channels: m.device_channels.clone(),
        job_id: m.job_id.clone(),
    })
}

/// When the take's audio was last written: its newest audio file's
/// modification time (recovery itself rewrote the manifest just now).
fn last_write(r: &Recovered) -> Option<SystemTime> {
    r.manifest
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(r.dir.join(&f.file)).ok()?.modified().ok())
        .max()
}

/// `<take>-r2` for `<take>`, `<take>-r3` for `<take>-r2`, … (the base cut
/// to fit the id limit).
pub fn next_id(old: &str) -> Option<String> {
    let (base, n) = match old.rsplit_once("-r") {
        Some((b, n))
            if !b.is_empty()
                && (1..=4).contains(&n.len())
                && n.bytes().all(|c| c.is_ascii_digit()) =>
        {
            (b, n.parse::<u32>().ok()?)
        }
        _ => (old, 1),
    };
    let suffix = format!("-r{}", n + 1);
    let keep = rakkr_protocol::limits::TAKE_ID_MAX
        .saturating_sub(suffix.len())
        .min(base.len());
    // NOTE: a valid id is ASCII, so any byte index is a char boundary.
    let id = format!("{}{suffix}", base.get(..keep)?);
    valid_id(&id).then_some(id)
}

/// The first id after `old` with no take directory under `output`.
fn next_free_id(old: &str, output: &Path) -> Option<String> {
    let mut id = next_id(old)?;
    for _ in 0..IDS_MAX {
        if !output.join(&id).exists() {
            return Some(id);
        }
        id = next_id(&id)?;
    }
    tracing::error!(
        take = old,
        "no free id to continue the interrupted take under"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_and_fit_the_limit() {
        assert_eq!(next_id("show").as_deref(), Some("show-r2"));
        assert_eq!(next_id("show-r2").as_deref(), Some("show-r3"));
        assert_eq!(next_id("show-r99").as_deref(), Some("show-r100"));
        // Not a resume suffix: a new one is added.
        assert_eq!(next_id("-r2").as_deref(), Some("-r2-r2"));
        assert_eq!(
            next_id("mix-rehearsal").as_deref(),
            Some("mix-rehearsal-r2")
        );
        let long = "a".repeat(rakkr_protocol::limits::TAKE_ID_MAX);
        let next = next_id(&long).unwrap();
        assert_eq!(next.len(), rakkr_protocol::limits::TAKE_ID_MAX);
        assert!(next.ends_with("-r2"));
    }

    #[test]
    fn a_taken_id_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("show-r2")).unwrap();
        assert_eq!(next_free_id("show", dir.path()).as_deref(), Some("show-r3"));
    }
}
