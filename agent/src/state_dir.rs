//! The state directory (`/var/lib/rakkr/agent` by default): created from
//! empty on first start, mode 0700.
//!
//! ```text
//! <state>/trust/          CA bundle, node certificate and key
//! <state>/outbox/         unacknowledged events (see outbox.rs)
//! <state>/commands.log    results of recent controller commands (append-only)
//! <state>/agent.sock      local control socket of the running daemon
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

/// Creates the state directory and its subdirectories (0700) if missing,
/// tightens them to 0700 when they are open to others (saying so), refuses
/// a `trust/` or `outbox/` that is a symbolic link, and checks that the
/// state directory is writable.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    for (d, top) in [
        (dir.to_owned(), true),
        (dir.join("trust"), false),
        (dir.join("outbox"), false),
    ] {
        match std::fs::symlink_metadata(&d) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .with_context(|| format!("creating state directory {}", d.display()))?;
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("restricting {}", d.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
            Ok(m) if m.file_type().is_symlink() && !top => bail!(
                "{} is a symbolic link: the agent keeps its trust and outbox in real directories of the state directory; remove the link",
                d.display()
            ),
            Ok(_) => {
                let m =
                    std::fs::metadata(&d).with_context(|| format!("reading {}", d.display()))?;
                if !m.is_dir() {
                    bail!("{} exists but is not a directory", d.display());
                }
                tighten(&d, &m)?;
            }
        }
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).with_context(|| {
        format!(
            "state directory {} is not writable by this user",
            dir.display()
        )
    })?;
    Ok(())
}

/// Makes a directory of ours that others can enter private (0700).
fn tighten(d: &Path, m: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = m.mode() & 0o777;
    if mode & 0o077 == 0 || m.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", d.display()))?;
    tracing::warn!(dir = %d.display(), was = format!("{mode:o}"), "the state directory was open to other users; it is now 0700");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_directories_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        prepare(&dir).unwrap();
        prepare(&dir).unwrap();
        for d in [&dir, &dir.join("trust"), &dir.join("outbox")] {
            assert_eq!(
                std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }

    #[test]
    fn open_directories_are_made_private_and_a_linked_trust_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir_all(dir.join("trust")).unwrap();
        for d in [&dir, &dir.join("trust")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        prepare(&dir).unwrap();
        for d in [&dir, &dir.join("trust")] {
            assert_eq!(
                std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        std::fs::remove_dir(dir.join("trust")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("trust")).unwrap();
        let err = format!("{:#}", prepare(&dir).unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("state");
        std::fs::write(&f, b"").unwrap();
        let err = format!("{:#}", prepare(&f).unwrap_err());
        assert!(err.contains("not a directory"), "{err}");
    }
}
