//! Scheduled takes survive a restart: `<state>/scheduled-takes.json` holds
//! every take waiting for its start, replaced atomically each time the
//! list changes (on the engine thread: a few hundred bytes, rarely).
//!
//! Times are on the node's clock (ms since the epoch), converted from the
//! controller's when the take was scheduled, and an end is kept as a time,
//! not a length: the take ends when it was meant to even if a restart
//! made it start late. At start the daemon hands them back to the engine
//! (`autostart`): one whose start passed while the agent was down starts
//! at once (logged as late), one whose end passed is refused and reported.
//!
//! Bounds: at most `capture.max_takes` entries (16) are ever written; a
//! file over [`MAX_BYTES`] or that does not parse is set aside as
//! `scheduled-takes.json.bad` with an error in the log, never trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::StartRequest;
use crate::take::encoder::Container;

pub const FILE: &str = "scheduled-takes.json";
/// Largest file read (16 takes × 512 channels fit many times over).
pub const MAX_BYTES: u64 = 1 << 20;

/// One scheduled take, as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub take_id: String,
    /// 1-based device channels (empty: every one, or the first `channels`).
    #[serde(default)]
    pub channel_list: Vec<u16>,
    #[serde(default)]
    pub channels: Option<u16>,
    #[serde(default)]
    pub container: Option<Container>,
    #[serde(default)]
    pub segment_ms: Option<u64>,
    #[serde(default)]
    pub job_id: String,
    /// Start, the node's clock.
    pub at_ms: u64,
    /// End, the node's clock (`None`: when stopped).
    #[serde(default)]
    pub ends_at_ms: Option<u64>,
}

impl Kept {
    /// What `req`, starting at `at_ms`, is kept as.
    pub fn of(req: &StartRequest, at_ms: u64) -> Self {
        Self {
            take_id: req.take_id.clone(),
            channel_list: req.channel_list.clone().unwrap_or_default(),
            channels: req.channels,
            container: req.container,
            segment_ms: req.segment.map(|d| d.as_millis() as u64),
            job_id: req.job_id.clone(),
            at_ms,
            ends_at_ms: req
                .ends_at_ms
                .or(req.duration.map(|d| at_ms + d.as_millis() as u64)),
        }
    }

    /// The request that schedules it again.
    pub fn request(&self) -> StartRequest {
        StartRequest {
            channel_list: (!self.channel_list.is_empty()).then(|| self.channel_list.clone()),
            channels: self.channels,
            container: self.container,
            segment: self.segment_ms.map(Duration::from_millis),
            job_id: self.job_id.clone(),
            at_ms: Some(self.at_ms),
            ends_at_ms: self.ends_at_ms,
            ..StartRequest::named(&self.take_id)
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Replaces the file with `kept` (removes it when there is none).
pub fn save(path: &Path, kept: &[Kept]) -> anyhow::Result<()> {
    if kept.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let bytes = serde_json::to_vec_pretty(kept).context("encoding scheduled takes")?;
    rakkr_protocol::fsutil::atomic_write(path, &bytes, 0o600)
        .with_context(|| format!("writing scheduled takes {}", path.display()))
}

/// The takes kept in `path` (none when there is no file). A file that is
/// too large or does not parse is set aside, and the error says where.
pub fn load(path: &Path) -> anyhow::Result<Vec<Kept>> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let parsed = if len > MAX_BYTES {
        Err(anyhow::anyhow!("{len} bytes, more than {MAX_BYTES}"))
    } else {
        std::fs::read(path)
            .with_context(|| format!("reading {}", path.display()))
            .and_then(|b| serde_json::from_slice::<Vec<Kept>>(&b).map_err(Into::into))
    };
    parsed.or_else(|e| {
        let bad = path.with_extension("json.bad");
        let _ = std::fs::rename(path, &bad);
        Err(e).with_context(|| {
            format!(
                "scheduled takes {} are unreadable; set aside as {}: schedule them again",
                path.display(),
                bad.display()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_takes_come_back_as_the_same_request() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(load(&p).unwrap().is_empty(), "no file: none");
        let req = StartRequest {
            channel_list: Some(vec![17, 18]),
            container: Some(Container::Wav),
            segment: Some(Duration::from_secs(10)),
            job_id: "choir".into(),
            duration: Some(Duration::from_secs(1200)),
            ..StartRequest::named("choir-1")
        };
        let kept = Kept::of(&req, 1_000_000);
        assert_eq!(kept.ends_at_ms, Some(2_200_000), "a length becomes an end");
        save(&p, std::slice::from_ref(&kept)).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back, std::slice::from_ref(&kept));
        let again = back[0].request();
        assert_eq!(again.at_ms, Some(1_000_000));
        assert_eq!(again.ends_at_ms, Some(2_200_000));
        assert_eq!(again.channel_list, Some(vec![17, 18]));
        assert_eq!(again.segment, Some(Duration::from_secs(10)));
        save(&p, &[]).unwrap();
        assert!(!p.exists(), "none left: no file");
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        std::fs::write(&p, b"[{\"takeId\": ").unwrap();
        let err = format!("{:#}", load(&p).unwrap_err());
        assert!(err.contains("set aside") && err.contains(".bad"), "{err}");
        assert!(!p.exists() && p.with_extension("json.bad").exists());
        assert!(load(&p).unwrap().is_empty());
    }
}
