//! Receipts: the controller says which files of a take it holds and the
//! SHA-256 it computed over what it received; a file is *received* when
//! that equals the manifest's hash. Receipts are durable in the take's
//! `manifest.json` (`transfer.received`, atomic rewrite), so retention can
//! trust them across restarts. A mismatch leaves the file unreceived: it
//! is never deleted on a receipt the agent could not check.
//!
//! Who writes the manifest: the writer of the recording take (through the
//! engine, see `Take::receive`), or this module for a take that is not
//! recording, while holding the take's lock (so the two never race).

use std::path::Path;

use rakkr_protocol::{FileReceipt, RefusedReceipt};

use super::lock::TakeLock;
use super::manifest::{Manifest, Received};

/// What a receipt did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files now received (including ones received before with this hash).
    pub accepted: Vec<String>,
    pub refused: Vec<RefusedReceipt>,
}

/// Applies `receipts` to `m` (in memory); `true` in the second place when
/// the manifest changed and must be written.
pub fn apply(m: &mut Manifest, receipts: &[FileReceipt], now: &str) -> (Outcome, bool) {
    let mut out = Outcome::default();
    let mut changed = false;
    for r in receipts {
        let refuse = |expected: &str, reason: String| RefusedReceipt {
            file: r.file.clone(),
            expected_sha256: expected.to_owned(),
            received_sha256: r.sha256.clone(),
            reason,
        };
        let Some(f) = m.files.iter().find(|f| f.file == r.file) else {
            let why = if m.open_files.iter().any(|f| f.file == r.file) {
                "the file is still being recorded"
            } else {
                "the take lists no such closed file"
            };
            out.refused.push(refuse("", why.into()));
            continue;
        };
        if f.sha256.is_empty() {
            out.refused.push(refuse(
                "",
                "the file is not hashed yet: send the receipt again after its SegmentClosed event"
                    .into(),
            ));
            continue;
        }
        if !f.sha256.eq_ignore_ascii_case(&r.sha256) {
            out.refused.push(refuse(
                &f.sha256,
                "the controller's copy differs from the file recorded here (changed in transfer, or on this disk after it was hashed); it stays unreceived".into(),
            ));
            continue;
        }
        let already = m
            .transfer
            .received
            .get(&f.file)
            .is_some_and(|x| x.sha256 == f.sha256);
        if !already {
            m.transfer.received.insert(
                f.file.clone(),
                Received {
                    sha256: f.sha256.clone(),
                    at: now.to_owned(),
                },
            );
            changed = true;
        }
        out.accepted.push(f.file.clone());
    }
    (out, changed)
}

/// Records `receipts` in the take in `dir` when no one records it.
/// `Ok(None)`: the take is recording (its writer must do it).
pub fn record(dir: &Path, receipts: &[FileReceipt]) -> anyhow::Result<Option<Outcome>> {
    let Some(_lock) = TakeLock::try_acquire(dir)? else {
        return Ok(None);
    };
    let mut m = Manifest::read(dir)?;
    let (out, changed) = apply(&mut m, receipts, &crate::util::now_iso8601());
    if changed {
        m.write(dir)?;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(file: &str, sha: &str) -> FileReceipt {
        FileReceipt {
            file: file.into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn a_matching_receipt_is_durable_and_a_wrong_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = crate::take::writer::tests::record_into(dir.path());
        let take = dir.path().join("t1");
        let (a, b) = (&m.files[0], &m.files[1]);
        let out = record(
            &take,
            &[
                receipt(&a.file, &a.sha256),
                receipt(&b.file, &"0".repeat(64)),
                receipt("../../etc/passwd", &a.sha256),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.accepted, std::slice::from_ref(&a.file));
        assert_eq!(out.refused.len(), 2);
        assert_eq!(out.refused[0].expected_sha256, b.sha256);
        assert!(out.refused[0].reason.contains("differs"));
        assert!(out.refused[1].reason.contains("no such closed file"));
        let on_disk = Manifest::read(&take).unwrap();
        assert!(on_disk.is_received(a));
        assert!(!on_disk.is_received(b));
        assert!(!on_disk.all_received());
        // Again: nothing changes, it is still accepted.
        let again = record(&take, &[receipt(&a.file, &a.sha256)])
            .unwrap()
            .unwrap();
        assert_eq!(again.accepted, std::slice::from_ref(&a.file));
    }

    #[test]
    fn a_take_being_recorded_is_left_to_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _) = crate::take::writer::tests::record_into(dir.path());
        let take = dir.path().join("t1");
        let _held = TakeLock::acquire(&take).unwrap();
        assert_eq!(record(&take, &[]).unwrap(), None);
    }
}
