//! Continuing a take that a crash or a power cut interrupted.
//!
//! At start, recovery repairs every take that was still recording (see
//! `recover.rs`). Each of them whose audio was last written within
//! `capture.resume_within_seconds` goes on by itself as a new take as soon
//! as the device is open (several takes at once: all of them): same
//! channels, format, segment length and job, id `<take>-r2` (`<take>-r3`
//! after `<take>-r2`, …), its manifest naming the take it `continues`; a
//! take that was to end by itself ends at the same time. Only the audio
//! between the last sample recovery kept and the first of the new take is
//! lost.
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
    /// When it ends by itself, as the take it continues would have (the
    /// node's clock, ms; `None`: when stopped).
    pub ends_at_ms: Option<u64>,
}

/// The takes to start once the device is open, oldest first.
pub fn plan(recovered: &[Recovered], within: Duration, now: SystemTime) -> Vec<Resume> {
    if within.is_zero() {
        return Vec::new();
    }
    let mut plans: Vec<(SystemTime, Resume)> = recovered
        .iter()
        .filter_map(|r| {
            let written = last_write(r)?;
            Some((written, one(r, written, within, now)?))
        })
        .collect();
    plans.sort_by_key(|(t, _)| *t);
    plans.into_iter().map(|(_, r)| r).collect()
}

/// The take that continues `r`, if it should.
fn one(r: &Recovered, written: SystemTime, within: Duration, now: SystemTime) -> Option<Resume> {
    let m = &r.manifest;
    let age = now.duration_since(written).unwrap_or_default();
    if age > within {
        tracing::info!(take = %m.take_id, age_s = age.as_secs(), "an interrupted take is too old to continue by itself (capture.resume_within_seconds)");
        return None;
    }
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if let Some(end) = m.ends_at_ms.filter(|end| *end <= now_ms) {
        tracing::info!(take = %m.take_id, ended_ms_ago = now_ms - end, "an interrupted take's end time passed while the agent was down: it does not continue");
        return None;
    }
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
        ends_at_ms: m.ends_at_ms,
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

    /// A finished take `id` under `out`, as recovery hands it over.
    fn recovered(out: &Path, id: &str, ends_at_ms: Option<u64>) -> Recovered {
        use crate::take::writer::{Ending, Take, TakeSpec};
        let mut t = Take::start(TakeSpec {
            take_id: id.into(),
            output: out.to_owned(),
            ends_at_ms,
            ..crate::take::writer::tests::spec(out, 10_000)
        })
        .unwrap();
        let mut ev = Vec::new();
        t.write(&vec![7; 4_000 * 3], &mut ev).unwrap();
        let manifest = t.finish(Ending::asked("test"), &mut ev).manifest;
        Recovered {
            dir: out.join(id),
            manifest,
        }
    }

    #[test]
    fn every_recent_interrupted_take_continues_and_keeps_its_end_time() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now() + Duration::from_secs(5);
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let all = [
            recovered(dir.path(), "archive", None),
            recovered(dir.path(), "choir", Some(now_ms + 60_000)),
            recovered(dir.path(), "sermon", Some(now_ms - 1)),
        ];
        let plans = plan(&all, Duration::from_secs(60), now);
        let ids: Vec<_> = plans.iter().map(|r| r.take_id.as_str()).collect();
        assert_eq!(ids, ["archive-r2", "choir-r2"], "the ended one stays ended");
        assert_eq!(plans[0].ends_at_ms, None);
        assert_eq!(plans[1].ends_at_ms, Some(now_ms + 60_000));
        assert_eq!(plans[1].continues, "choir");
        assert!(plan(&all, Duration::ZERO, now).is_empty(), "resume is off");
        let later = now + Duration::from_secs(120);
        assert!(
            plan(&all, Duration::from_secs(60), later).is_empty(),
            "too old"
        );
    }

    #[test]
    fn a_taken_id_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("show-r2")).unwrap();
        assert_eq!(next_free_id("show", dir.path()).as_deref(), Some("show-r3"));
    }
}
