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
/// and checks that it is a writable directory.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    for d in [dir.to_owned(), dir.join("trust"), dir.join("outbox")] {
        if !d.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .with_context(|| format!("creating state directory {}", d.display()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", d.display()))?;
        } else if !d.is_dir() {
            bail!("{} exists but is not a directory", d.display());
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
    fn a_file_in_the_way_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("state");
        std::fs::write(&f, b"").unwrap();
        let err = format!("{:#}", prepare(&f).unwrap_err());
        assert!(err.contains("not a directory"), "{err}");
    }
}
