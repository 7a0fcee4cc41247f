//! Retention: which takes may leave the node's disk, and deleting them.
//!
//! NOTE: the invariant — a take is deleted only when it has ended and
//! every file it lists has a receipt matching its hash (`all_received`),
//! nobody records it (its lock is free), and its directory holds nothing
//! else a receipt does not cover. Policies only choose among such takes:
//! - `delete_received_after`: this long after its last receipt (0: at once);
//! - `max_takes_bytes`: the oldest received first while all takes together
//!   use more;
//! - `min_free_percent`: the oldest received first while the disk has less
//!   free. When nothing may go and the disk is still short, that is said
//!   (`Plan::blocked`), never fixed by deleting unreceived audio.
//!
//! Only names the manifest lists (plain names, see `listing`), the manifest
//! and the lock are removed, then the empty directory: nothing outside the
//! recordings directory, and no symlink is followed (removing one removes
//! the link).

use std::path::Path;
use std::time::Duration;

use super::listing;
use super::lock::TakeLock;
use super::manifest::{FILE_NAME as MANIFEST, Manifest};

/// What retention may do (all `None`: keep everything, the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub delete_received_after: Option<Duration>,
    pub max_takes_bytes: Option<u64>,
    pub min_free_percent: Option<u8>,
}

impl Policy {
    pub fn is_keep_all(&self) -> bool {
        *self == Self::default()
    }
}

/// A take as retention weighs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub take_id: String,
    /// Unix seconds it started (the order: oldest first).
    pub started: i64,
    /// Unix seconds of its last receipt (0: none).
    pub last_receipt: i64,
    pub bytes: u64,
    /// Ended, every file received.
    pub deletable: bool,
}

/// What retention would do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Take id and why, oldest first.
    pub delete: Vec<(String, String)>,
    /// Why the disk stays short although it should not.
    pub blocked: Option<String>,
}

/// Free and total bytes of the recordings filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub free: u64,
    pub total: u64,
}

/// Chooses what to delete now (`now`: unix seconds).
pub fn plan(cands: &[Candidate], policy: &Policy, disk: Disk, now: i64) -> Plan {
    let mut order: Vec<&Candidate> = cands.iter().collect();
    order.sort_by_key(|c| (c.started, c.take_id.clone()));
    let mut out = Plan::default();
    fn choose(out: &mut Plan, c: &Candidate, why: String) -> bool {
        if out.delete.iter().any(|(id, _)| *id == c.take_id) {
            return false;
        }
        out.delete.push((c.take_id.clone(), why));
        true
    }
    if let Some(after) = policy.delete_received_after {
        for c in order.iter().filter(|c| c.deletable) {
            if now.saturating_sub(c.last_receipt) >= after.as_secs() as i64 {
                let why = format!(
                    "every file received by the controller, {} h ago (retention.delete_received_after_hours = {})",
                    now.saturating_sub(c.last_receipt) / 3600,
                    after.as_secs() / 3600
                );
                choose(&mut out, c, why);
            }
        }
    }
    if let Some(max) = policy.max_takes_bytes {
        let mut total: u64 = cands
            .iter()
            .filter(|c| !out.delete.iter().any(|(id, _)| *id == c.take_id))
            .map(|c| c.bytes)
            .sum();
        for c in order.iter().filter(|c| c.deletable) {
            if total <= max {
                break;
            }
            let why = format!(
                "takes use {} MiB, over retention.max_takes_mb ({}); received, oldest first",
                total >> 20,
                max >> 20
            );
            if choose(&mut out, c, why) {
                total = total.saturating_sub(c.bytes);
            }
        }
        if total > max {
            out.blocked = Some(format!(
                "takes use {} MiB, over retention.max_takes_mb ({}), and no other take has every file received by the controller",
                total >> 20,
                max >> 20
            ));
        }
    }
    if let Some(pct) = policy.min_free_percent {
        let want = disk.total / 100 * u64::from(pct);
        let mut free = disk.free
            + cands
                .iter()
                .filter(|c| out.delete.iter().any(|(id, _)| *id == c.take_id))
                .map(|c| c.bytes)
                .sum::<u64>();
        for c in order.iter().filter(|c| c.deletable) {
            if free >= want {
                break;
            }
            let why = format!(
                "{} % free, under retention.min_free_percent ({pct} %); received, oldest first",
                free * 100 / disk.total.max(1)
            );
            if choose(&mut out, c, why) {
                free += c.bytes;
            }
        }
        if free < want {
            out.blocked = Some(format!(
                "{} % free, under retention.min_free_percent ({pct} %), and no other take has every file received by the controller",
                free * 100 / disk.total.max(1)
            ));
        }
    }
    out
}

fn unix(iso: &str) -> i64 {
    time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp())
}

/// The candidates in `recordings`.
pub fn candidates(recordings: &Path) -> Vec<Candidate> {
    listing::takes(recordings)
        .into_iter()
        .filter_map(|(id, m)| {
            let m = m.ok()?;
            let dir = recordings.join(&id);
            Some(Candidate {
                started: unix(&m.started_at),
                last_receipt: m
                    .transfer
                    .received
                    .values()
                    .map(|r| unix(&r.at))
                    .max()
                    .unwrap_or(0),
                bytes: listing::summary(&dir, &m).bytes,
                deletable: m.all_received(),
                take_id: id,
            })
        })
        .collect()
}

/// Deletes take `id` if it still may go (see the module doc); returns the
/// files and bytes removed.
pub fn delete(recordings: &Path, id: &str) -> anyhow::Result<(u32, u64)> {
    let dir = listing::take_dir(recordings, id).map_err(anyhow::Error::msg)?;
    let Some(lock) = TakeLock::try_acquire(&dir)? else {
        anyhow::bail!("take {id} is being recorded");
    };
    let m = Manifest::read(&dir)?;
    if !m.all_received() {
        anyhow::bail!("take {id} has files the controller has not received");
    }
    let listed: std::collections::HashSet<&str> = m.files.iter().map(|f| f.file.as_str()).collect();
    if let Some(bad) = m.files.iter().find(|f| !listing::plain_name(&f.file)) {
        anyhow::bail!(
            "take {id} lists {:?}, which is not a plain file name",
            bad.file
        );
    }
    let extra: Vec<String> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !listed.contains(n.as_str())
                && n != MANIFEST
                && n != super::lock::FILE_NAME
                && n != super::reserve::FILE_NAME
        })
        .collect();
    if !extra.is_empty() {
        anyhow::bail!(
            "take {id} holds files no receipt covers ({}): kept",
            extra.join(", ")
        );
    }
    let (mut files, mut bytes) = (0u32, 0u64);
    for f in &m.files {
        let path = dir.join(&f.file);
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            bytes += md.len();
        }
        match std::fs::remove_file(&path) {
            Ok(()) => files += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The manifest last among what matters: until then the take is whole
    // enough to say what it was.
    std::fs::remove_file(dir.join(MANIFEST))?;
    let _ = std::fs::remove_file(dir.join(super::reserve::FILE_NAME));
    let _ = std::fs::remove_file(dir.join(super::lock::FILE_NAME));
    drop(lock);
    std::fs::remove_dir(&dir)?;
    rakkr_protocol::fsutil::sync_dir(recordings)?;
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, started: i64, bytes: u64, deletable: bool) -> Candidate {
        Candidate {
            take_id: id.into(),
            started,
            last_receipt: if deletable { started + 10 } else { 0 },
            bytes,
            deletable,
        }
    }

    const DISK: Disk = Disk {
        free: 50 << 20,
        total: 1000 << 20,
    };

    #[test]
    fn keeping_everything_deletes_nothing() {
        let c = [cand("a", 1, 10, true)];
        assert_eq!(plan(&c, &Policy::default(), DISK, 100), Plan::default());
    }

    #[test]
    fn only_received_takes_go_oldest_first_and_a_short_disk_is_said() {
        let c = [
            cand("new", 30, 100 << 20, true),
            cand("unreceived", 10, 400 << 20, false),
            cand("old", 20, 100 << 20, true),
        ];
        let p = Policy {
            min_free_percent: Some(50),
            ..Policy::default()
        };
        let got = plan(&c, &p, DISK, 1000);
        let ids: Vec<_> = got.delete.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(ids, ["old", "new"], "received only, oldest first");
        assert!(got.blocked.unwrap().contains("no other take"));
        let after = Policy {
            delete_received_after: Some(Duration::ZERO),
            ..Policy::default()
        };
        let got = plan(&c, &after, DISK, 1000);
        assert_eq!(got.delete.len(), 2);
        assert!(got.delete.iter().all(|d| d.0 != "unreceived"));
        let bytes = Policy {
            max_takes_bytes: Some(500 << 20),
            ..Policy::default()
        };
        let got = plan(&c, &bytes, DISK, 1000);
        assert_eq!(
            got.delete.len(),
            1,
            "one received take brings it to 500 MiB"
        );
        assert_eq!(got.delete[0].0, "old");
        assert_eq!(got.blocked, None);
    }

    #[test]
    fn a_take_goes_only_when_every_file_is_received_and_nothing_else_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = crate::take::writer::tests::record_into(dir.path());
        let take = dir.path().join("t1");
        let receipts: Vec<_> = m
            .files
            .iter()
            .map(|f| rakkr_protocol::FileReceipt {
                file: f.file.clone(),
                sha256: f.sha256.clone(),
            })
            .collect();
        crate::take::receipt::record(&take, &receipts[..1]).unwrap();
        assert!(
            delete(dir.path(), "t1")
                .unwrap_err()
                .to_string()
                .contains("not received")
        );
        crate::take::receipt::record(&take, &receipts).unwrap();
        std::fs::write(take.join("notes.txt"), b"an engineer's note").unwrap();
        assert!(
            delete(dir.path(), "t1")
                .unwrap_err()
                .to_string()
                .contains("notes.txt")
        );
        std::fs::remove_file(take.join("notes.txt")).unwrap();
        // A symlink planted as a listed file: the link goes, not its target.
        let outside = dir.path().join("outside.flac");
        std::fs::copy(take.join(&m.files[0].file), &outside).unwrap();
        std::fs::remove_file(take.join(&m.files[0].file)).unwrap();
        std::os::unix::fs::symlink(&outside, take.join(&m.files[0].file)).unwrap();
        let (files, _) = delete(dir.path(), "t1").unwrap();
        assert_eq!(files as usize, m.files.len());
        assert!(!take.exists());
        assert!(outside.exists(), "nothing outside the take is touched");
        assert!(delete(dir.path(), "..").is_err());
    }
}
