//! Atomic install beside the installed binary, keeping the previous one.
//!
//! ```text
//! <dir>/rakkr-recorder-agent            the installed binary (real file)
//! <dir>/rakkr-recorder-agent.previous   the one it replaced (for rollback)
//! <dir>/rakkr-recorder-agent.failed     the one a rollback took out
//! ```
//!
//! Install: copy the candidate to a temp file in `<dir>` → `sync_all` →
//! hard-link the installed binary to `.previous` (through a temp name and a
//! rename, so `.previous` is always whole) → rename the temp file over the
//! installed path → fsync `<dir>`. Renaming over a running binary is fine
//! (copying over it fails with "text file busy").
//! See: docs/controller-contract.md, "Lessons from the field about self-update".

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rakkr_protocol::fsutil::sync_dir;

use super::UpdateError;

/// Where the binary is installed and where its previous version is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The real file (symlinks followed).
    pub installed: PathBuf,
    pub previous: PathBuf,
    pub failed: PathBuf,
}

impl Paths {
    /// `install_path`, or the binary this process was started from;
    /// symlinks are followed to the real file.
    pub fn resolve(install_path: Option<&Path>) -> Result<Self, UpdateError> {
        let given = match install_path {
            Some(p) => p.to_owned(),
            None => self_path()?,
        };
        let installed = match std::fs::canonicalize(&given) {
            Ok(p) => p,
            // A first install: the directory must exist.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = given.parent().filter(|p| !p.as_os_str().is_empty());
                let dir = std::fs::canonicalize(dir.unwrap_or(Path::new(".")))
                    .map_err(UpdateError::io(format!("resolving {}", given.display())))?;
                dir.join(given.file_name().unwrap_or_default())
            }
            Err(e) => return Err(UpdateError::io(format!("resolving {}", given.display()))(e)),
        };
        let name = installed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sibling = |suffix: &str| installed.with_file_name(format!("{name}.{suffix}"));
        Ok(Self {
            previous: sibling("previous"),
            failed: sibling("failed"),
            installed,
        })
    }

    fn dir(&self) -> &Path {
        self.installed.parent().unwrap_or(Path::new("/"))
    }

    fn temp(&self, what: &str) -> PathBuf {
        let name = self
            .installed
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        self.dir().join(format!(
            ".{name}.{what}.{}.{:x}",
            std::process::id(),
            fastrand::u32(..)
        ))
    }
}

/// The running binary's path. After an install renamed a new file over
/// it, `/proc/self/exe` reads "<path> (deleted)": the path is still right.
pub fn self_path() -> Result<PathBuf, UpdateError> {
    let p = std::env::current_exe().map_err(UpdateError::io("finding this binary's path"))?;
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => p,
    })
}

/// Copies `from` into a new temp file beside `paths.installed`, fsynced, mode 0755.
fn stage_copy(from: &Path, paths: &Paths, what: &str) -> Result<PathBuf, UpdateError> {
    let tmp = paths.temp(what);
    let result = (|| {
        let mut src = std::fs::File::open(from)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&tmp)?;
        std::io::copy(&mut src, &mut dst)?;
        dst.flush()?;
        dst.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        // NOTE: installed by root, the binary still belongs to the service
        // user who owns the directory, or its own updates could not keep
        // the previous one (protected_hardlinks) or replace it.
        crate::util::give_like(&tmp, paths.dir())?;
        dst.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(UpdateError::io(format!(
                "writing {} beside {}",
                from.display(),
                paths.installed.display()
            ))(e))
        }
    }
}

/// Makes `to` a whole copy of `from` (hard link when possible), atomically.
fn keep_copy(from: &Path, to: &Path, paths: &Paths) -> Result<(), UpdateError> {
    let tmp = paths.temp("keep");
    let linked = std::fs::hard_link(from, &tmp).is_ok();
    let tmp = if linked {
        tmp
    } else {
        stage_copy(from, paths, "keep")?
    };
    std::fs::rename(&tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        UpdateError::io(format!("keeping {} as {}", from.display(), to.display()))(e)
    })
}

/// Installs `candidate` (already verified) over `paths.installed`.
pub fn install(candidate: &Path, paths: &Paths) -> Result<(), UpdateError> {
    let tmp = stage_copy(candidate, paths, "new")?;
    let result = (|| {
        if paths.installed.exists() {
            keep_copy(&paths.installed, &paths.previous, paths)?;
        }
        std::fs::rename(&tmp, &paths.installed).map_err(UpdateError::io(format!(
            "renaming the new binary over {}",
            paths.installed.display()
        )))?;
        sync_dir(paths.dir()).map_err(UpdateError::io(format!("fsync {}", paths.dir().display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts the previous binary back; the one it replaces is kept as `.failed`.
pub fn rollback(paths: &Paths) -> Result<(), UpdateError> {
    if !paths.previous.is_file() {
        return Err(UpdateError::NoPrevious(
            paths.previous.display().to_string(),
        ));
    }
    super::artifact::check_elf(&paths.previous)?;
    if paths.installed.exists() {
        keep_copy(&paths.installed, &paths.failed, paths)?;
    }
    let tmp = paths.temp("restore");
    if std::fs::hard_link(&paths.previous, &tmp).is_err() {
        let staged = stage_copy(&paths.previous, paths, "restore")?;
        std::fs::rename(&staged, &tmp).map_err(UpdateError::io("staging the previous binary"))?;
    }
    std::fs::rename(&tmp, &paths.installed).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        UpdateError::io(format!("restoring {}", paths.installed.display()))(e)
    })?;
    sync_dir(paths.dir()).map_err(UpdateError::io(format!("fsync {}", paths.dir().display())))
}

/// Installs a verified candidate over `previous_version` and puts it on probation.
pub fn install_with_state(
    verified: &super::artifact::Verified,
    previous_version: &str,
    paths: &Paths,
    state_dir: &std::path::Path,
) -> Result<(), UpdateError> {
    install(&verified.path, paths)?;
    let st = super::state::UpdateState::new(
        super::state::Phase::Probation,
        &verified.version,
        previous_version,
        paths,
        "",
    );
    super::state::save(state_dir, &st).map_err(|e| UpdateError::Io {
        context: "recording the update state".into(),
        source: std::io::Error::other(format!("{e:#}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_keeps_the_previous_binary_and_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("bin");
        std::fs::create_dir(&real).unwrap();
        let installed = real.join("agent");
        std::fs::write(&installed, b"old").unwrap();
        // Installed through a symlink: the real file is replaced, the link stays.
        let link = dir.path().join("agent-link");
        std::os::unix::fs::symlink(&installed, &link).unwrap();
        let paths = Paths::resolve(Some(&link)).unwrap();
        assert_eq!(paths.installed, std::fs::canonicalize(&installed).unwrap());
        let cand = dir.path().join("cand");
        std::fs::write(&cand, b"new").unwrap();
        install(&cand, &paths).unwrap();
        assert_eq!(std::fs::read(&link).unwrap(), b"new");
        assert_eq!(std::fs::read(&paths.previous).unwrap(), b"old");
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&real)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        // Rollback refuses a previous that is not an executable...
        let err = rollback(&paths).unwrap_err();
        assert!(matches!(err, UpdateError::NotExecutable(_)), "{err}");
        assert_eq!(std::fs::read(&installed).unwrap(), b"new");
        // ...and restores a real one.
        let me = std::env::current_exe().unwrap();
        std::fs::copy(&me, &paths.previous).unwrap();
        rollback(&paths).unwrap();
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(&me).unwrap()
        );
        assert_eq!(std::fs::read(&paths.failed).unwrap(), b"new");
    }

    #[test]
    fn rollback_without_previous_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let installed = dir.path().join("agent");
        std::fs::write(&installed, b"x").unwrap();
        let paths = Paths::resolve(Some(&installed)).unwrap();
        let err = rollback(&paths).unwrap_err();
        assert!(err.to_string().contains("agent.previous"), "{err}");
        assert_eq!(err.exit_code(), 16);
    }
}
