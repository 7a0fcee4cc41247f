//! `takes verify`: checks every file of a take against its manifest and
//! its format's own rules, and reports; it never changes anything.
//!
//! Per file listed in `files`: it exists; its SHA-256 is the manifest's;
//! FLAC: every frame's CRC-8 and CRC-16 check out from the first frame to
//! the end of the file, and the frames, STREAMINFO and the manifest agree
//! on the sample count; WAV/W64: the header's sizes match the file and the
//! manifest's sample count. A take being recorded (its lock is held) is
//! not checked. Damaged files are reported and kept as they are: repairing
//! a closed file would hide what happened to it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::encoder::Container;
use super::lock::TakeLock;
use super::manifest::{FileEntry, Manifest, TakeStatus};
use super::{flacscan, riffscan};

/// What `verify_take` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dir: PathBuf,
    /// Empty when the manifest could not be read.
    pub take_id: String,
    pub status: String,
    pub files_checked: usize,
    /// Each names the file and what is wrong; empty: the take is intact.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong (files set aside by recovery, …).
    pub notes: Vec<String>,
    /// The take is being recorded: not checked.
    pub skipped: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the take in `dir`.
pub fn verify_take(dir: &Path) -> Report {
    let mut r = Report {
        dir: dir.to_owned(),
        take_id: String::new(),
        status: String::new(),
        files_checked: 0,
        problems: Vec::new(),
        notes: Vec::new(),
        skipped: false,
    };
    let m = match Manifest::read(dir) {
        Ok(m) => m,
        Err(e) => {
            r.problems.push(format!(
                "{}: unreadable ({e:#}); the audio files are left as they are",
                super::manifest::FILE_NAME
            ));
            return r;
        }
    };
    r.take_id.clone_from(&m.take_id);
    r.status = serde_json::to_value(m.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if m.status == TakeStatus::Recording && matches!(TakeLock::try_acquire(dir), Ok(None)) {
        r.skipped = true;
        r.notes.push("being recorded now: not checked".into());
        return r;
    }
    if m.status == TakeStatus::Recording {
        r.problems.push(
            "interrupted (status recording, nobody records it): run `recover` to repair it".into(),
        );
    }
    for f in &m.files {
        r.files_checked += 1;
        check_file(dir, m.format, f, &mut r.problems);
    }
    notes(dir, &m, &mut r.notes);
    r
}

fn check_file(dir: &Path, container: Container, f: &FileEntry, problems: &mut Vec<String>) {
    let path = dir.join(&f.file);
    if !path.is_file() {
        problems.push(format!("{}: missing", f.file));
        return;
    }
    if f.sha256.is_empty() {
        problems.push(format!("{}: the manifest has no SHA-256 for it", f.file));
    } else {
        match crate::util::sha256_file(&path) {
            Ok((sha, _)) if sha == f.sha256 => {}
            Ok((sha, _)) => problems.push(format!(
                "{}: SHA-256 {sha} differs from the manifest's {} (the file changed after it was closed)",
                f.file, f.sha256
            )),
            Err(e) => problems.push(format!("{}: unreadable: {e}", f.file)),
        }
    }
    let format = match container {
        Container::Flac => check_flac(&path, f.samples),
        Container::Wav | Container::W64 => {
            check_pcm(&path, container, f.channels.len() as u16, f.samples)
        }
    };
    if let Err(why) = format {
        problems.push(format!("{}: {why}", f.file));
    }
}

fn check_flac(path: &Path, samples: u64) -> Result<(), String> {
    let (start, frames) = flacscan::scan_with_start(path).map_err(|e| format!("{e:#}"))?;
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let end = frames.last().map_or(start, |f| f.end);
    let held = frames.last().map_or(0, |f| f.samples);
    if end < len {
        return Err(format!(
            "not a valid FLAC stream after byte {end} of {len} (a frame's CRC fails or the file was cut): {held} of {samples} samples readable"
        ));
    }
    let declared = flacscan::streaminfo_samples(path).map_err(|e| format!("{e:#}"))?;
    if held != samples || declared != samples {
        return Err(format!(
            "holds {held} samples in its frames and {declared} in STREAMINFO; the manifest says {samples}"
        ));
    }
    Ok(())
}

fn check_pcm(path: &Path, container: Container, channels: u16, samples: u64) -> Result<(), String> {
    let d = riffscan::find_data(path, container).map_err(|e| format!("{e:#}"))?;
    let fb = container.frame_bytes(channels);
    let pad = u64::from(container == Container::Wav && d.declared % 2 == 1);
    if d.declared + pad != d.present && d.declared != d.present {
        return Err(format!(
            "its header declares {} bytes of audio but it holds {} (cut or grown after it was closed)",
            d.declared, d.present
        ));
    }
    if d.declared != samples * fb {
        return Err(format!(
            "holds {} frames; the manifest says {samples}",
            d.declared / fb
        ));
    }
    Ok(())
}

/// Files in the take directory the manifest does not list.
fn notes(dir: &Path, m: &Manifest, notes: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        if n.starts_with('.')
            || n == super::manifest::FILE_NAME
            || m.files.iter().any(|f| f.file == n)
        {
            continue;
        }
        if n.ends_with(super::recover::SET_ASIDE_SUFFIX) {
            notes.push(format!(
                "{n}: bytes recovery did not take as audio, kept aside"
            ));
        } else if !n.ends_with(".tmp") {
            notes.push(format!("{n}: not listed in the manifest"));
        }
    }
}

/// Every take directory directly under `root` (those with a manifest, or
/// with a damaged one), sorted.
pub fn take_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root)?.flatten() {
        let p = e.path();
        if p.join(super::manifest::FILE_NAME).exists() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::take::encoder::tests::signal;
    use crate::take::writer::{Ending, Take, TakeSpec};

    fn take(dir: &Path, container: Container) -> PathBuf {
        let mut t = Take::start(TakeSpec {
            take_id: "v".into(),
            container,
            channel_names: vec!["A".into(), "B".into()],
            ..crate::take::writer::tests::spec(dir, 10_000)
        })
        .unwrap();
        let mut ev = Vec::new();
        t.write(&signal(2, 15_000), &mut ev).unwrap();
        t.finish(Ending::asked("duration"), &mut ev)
            .persisted
            .unwrap();
        dir.join("v")
    }

    fn cut_by(path: &Path, bytes: u64) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - bytes).unwrap();
    }

    #[test]
    fn an_intact_take_verifies() {
        for c in [Container::Flac, Container::Wav, Container::W64] {
            let tmp = tempfile::tempdir().unwrap();
            let r = verify_take(&take(tmp.path(), c));
            assert!(r.ok(), "{c:?}: {:?}", r.problems);
            assert_eq!(r.files_checked, if c == Container::W64 { 2 } else { 4 });
        }
    }

    #[test]
    fn a_truncated_closed_flac_is_reported_by_name_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = take(tmp.path(), Container::Flac);
        let m = Manifest::read(&dir).unwrap();
        let victim = dir.join(&m.files[0].file);
        cut_by(&victim, 3_333);
        let before = std::fs::read(&victim).unwrap();
        let r = verify_take(&dir);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems.iter().all(|p| p.starts_with(&m.files[0].file)));
        assert!(r.problems.iter().any(|p| p.contains("SHA-256")));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("not a valid FLAC stream"))
        );
        assert_eq!(std::fs::read(&victim).unwrap(), before, "kept as it is");
    }

    #[test]
    fn a_grown_wav_and_a_garbage_manifest_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = take(tmp.path(), Container::Wav);
        let m = Manifest::read(&dir).unwrap();
        let victim = dir.join(&m.files[1].file);
        let mut b = std::fs::read(&victim).unwrap();
        b.extend_from_slice(&[9; 600]);
        std::fs::write(&victim, b).unwrap();
        let r = verify_take(&dir);
        assert!(
            r.problems.iter().any(|p| p.contains("header declares")),
            "{:?}",
            r.problems
        );
        std::fs::write(dir.join("manifest.json"), b"{\"takeId\": ").unwrap();
        let r = verify_take(&dir);
        assert!(!r.ok() && r.problems[0].starts_with("manifest.json: unreadable"));
    }
}
