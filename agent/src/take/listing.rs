//! The takes in the recordings directory, as the controller and the
//! `takes` command see them, and the one way a peer reaches a take's
//! files: `open_listed`.
//!
//! NOTE: nothing a peer sends becomes a path unchecked. A take id must be a
//! safe name (`valid_id`) naming a real directory (not a symlink) in the
//! recordings directory; a file must be `manifest.json` or a closed file
//! the take's manifest lists, a plain name, opened with `O_NOFOLLOW` and
//! refused unless it is a regular file.

use std::fs::File;
use std::path::{Path, PathBuf};

use rakkr_protocol::{TakeFileState, TakeSummary};

use super::manifest::{FILE_NAME as MANIFEST, Manifest, TakeStatus};

/// Whether `id` is a take id: 1-128 of `A-Z a-z 0-9 - _ .`, not starting
/// with a dot (so never `.`, `..` or a hidden name).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= rakkr_protocol::limits::TAKE_ID_MAX
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Whether `name` is a plain file name (no directory part, not hidden).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= rakkr_protocol::limits::FILE_NAME_MAX
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
}

/// The directory of take `id`, if it is one: a real directory, no symlink.
pub fn take_dir(recordings: &Path, id: &str) -> Result<PathBuf, String> {
    if !valid_id(id) {
        return Err(format!(
            "take id {id:?} must be 1-128 of A-Z a-z 0-9 - _ . and not start with a dot"
        ));
    }
    let dir = recordings.join(id);
    match std::fs::symlink_metadata(&dir) {
        Ok(md) if md.file_type().is_dir() => Ok(dir),
        Ok(_) => Err(format!(
            "take {id} is not a directory (a symlink or a file)"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("no take {id} on this node"))
        }
        Err(e) => Err(format!("take {id}: {e}")),
    }
}

/// Every take in `recordings` (directories with a manifest), by id, with
/// its manifest or why it could not be read.
pub fn takes(recordings: &Path) -> Vec<(String, Result<Manifest, String>)> {
    let Ok(entries) = std::fs::read_dir(recordings) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| valid_id(id) && recordings.join(id).join(MANIFEST).exists())
        .map(|id| {
            let m = Manifest::read(&recordings.join(&id)).map_err(|e| format!("{e:#}"));
            (id, m)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn status_name(s: TakeStatus) -> &'static str {
    match s {
        TakeStatus::Recording => "recording",
        TakeStatus::Complete => "complete",
        TakeStatus::Stopped => "stopped",
        TakeStatus::Recovered => "recovered",
    }
}

/// The size of a listed file (0 if it is gone or not a regular file).
fn size_of(dir: &Path, file: &str) -> u64 {
    std::fs::symlink_metadata(dir.join(file))
        .ok()
        .filter(|m| m.file_type().is_file())
        .map_or(0, |m| m.len())
}

/// Take `id`'s summary.
pub fn summary(dir: &Path, m: &Manifest) -> TakeSummary {
    TakeSummary {
        take_id: m.take_id.clone(),
        status: status_name(m.status).to_owned(),
        device: m.device.clone(),
        channels: m.channels,
        sample_rate: m.sample_rate,
        format: m.format.wire(),
        segments: m.segments,
        frames: m.frames,
        files: m.files.len() as u32,
        received: m.files.iter().filter(|f| m.is_received(f)).count() as u32,
        bytes: m.files.iter().map(|f| size_of(dir, &f.file)).sum(),
    }
}

/// The closed files of a take, with sizes and receipt states.
pub fn file_states(dir: &Path, m: &Manifest) -> Vec<TakeFileState> {
    m.files
        .iter()
        .map(|f| TakeFileState {
            file: f.file.clone(),
            segment: f.segment,
            channels: f.channels.clone(),
            first_sample: f.first_sample,
            samples: f.samples,
            size: size_of(dir, &f.file),
            sha256: f.sha256.clone(),
            received: m.is_received(f),
        })
        .collect()
}

/// Opens `file` of take `id` for reading, if a peer may read it (see the
/// module doc). Returns the file and its size.
pub fn open_listed(recordings: &Path, id: &str, file: &str) -> Result<(File, u64), String> {
    let dir = take_dir(recordings, id)?;
    if !plain_name(file) {
        return Err(format!("{file:?} is not a file name"));
    }
    if file != MANIFEST {
        let m = Manifest::read(&dir).map_err(|e| format!("{e:#}"))?;
        if !m.files.iter().any(|f| f.file == file) {
            return Err(if m.open_files.iter().any(|f| f.file == file) {
                format!(
                    "{file} of take {id} is still being recorded: it can be read once its segment closed"
                )
            } else {
                format!("take {id} lists no file {file}")
            });
        }
    }
    open_no_follow(&dir.join(file))
}

fn open_no_follow(path: &Path) -> Result<(File, u64), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let md = f
        .metadata()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if !md.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok((f, md.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_from_a_peer_cannot_leave_the_recordings_directory() {
        for bad in ["", ".", "..", "../etc", "a/b", ".hidden", "a\0b"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        for bad in ["", "..", "../x", "a/b", ".reserve", ".lock"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(valid_id("show-1_a.b") && plain_name("01-Kick-s001.flac"));
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        assert!(
            take_dir(dir.path(), "linked")
                .unwrap_err()
                .contains("symlink")
        );
        assert!(take_dir(dir.path(), "..").is_err());
        assert!(
            take_dir(dir.path(), "none")
                .unwrap_err()
                .contains("no take")
        );
    }

    #[test]
    fn only_listed_closed_regular_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = crate::take::writer::tests::record_into(dir.path());
        let take = dir.path().join("t1");
        let listed = &m.files[0].file;
        let (_, size) = open_listed(dir.path(), "t1", listed).unwrap();
        assert_eq!(size, std::fs::metadata(take.join(listed)).unwrap().len());
        assert!(open_listed(dir.path(), "t1", "manifest.json").is_ok());
        assert!(open_listed(dir.path(), "t1", ".lock").is_err());
        assert!(
            open_listed(dir.path(), "t1", "other.flac")
                .unwrap_err()
                .contains("lists no file")
        );
        // A listed name replaced by a symlink is refused.
        std::fs::remove_file(take.join(listed)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", take.join(listed)).unwrap();
        assert!(open_listed(dir.path(), "t1", listed).is_err());
    }
}
