//! Installing trust on disk: complete generations and an atomic switch.
//!
//! Managed layout (the default paths, all in `<state>/trust/`, mode 0700):
//!
//! ```text
//! generations/<id>/{ca.pem,node.pem,node.key}   one complete identity each
//! current  -> generations/<id>                  switched by rename(2): atomic
//! previous -> generations/<id>                  the one before
//! ca.pem   -> current/ca.pem                    stable paths for readers
//! node.pem -> current/node.pem
//! node.key -> current/node.key                  (0600, never leaves the node)
//! ```
//!
//! A generation is written whole into a staging directory, fsynced and
//! renamed into place before `current` moves, so a reader sees the old
//! identity or the new one, never a mix (`load` re-reads if `current`
//! moved while it read). Other generations than current and previous are
//! removed. Trust configured at explicit paths (`trust.cert_path`, ...) is
//! replaced file by file instead, each file atomically, the old one kept
//! as `<file>.previous`.
//!
//! NOTE: `trust install` usually runs as root (Ansible) while the daemon
//! runs as the service user: everything created here is given to the
//! owner of the directory it is created in.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rakkr_protocol::fsutil::{atomic_write, sync_dir};

use crate::config::TrustPaths;

const CA: &str = "ca.pem";
const CERT: &str = "node.pem";
const KEY: &str = "node.key";

/// PEM text of one identity, already checked (see `validate`).
pub struct Pems<'a> {
    pub ca: &'a [u8],
    pub cert: &'a [u8],
    pub key: &'a [u8],
}

/// The trust directory when `paths` are the managed defaults.
pub fn managed_dir(paths: &TrustPaths) -> Option<&Path> {
    let dir = paths.cert.parent()?;
    let named =
        |p: &Path, name: &str| p.parent() == Some(dir) && p.file_name() == Some(name.as_ref());
    (named(&paths.ca_bundle, CA) && named(&paths.cert, CERT) && named(&paths.key, KEY))
        .then_some(dir)
}

/// Where `current` points now (managed layout), for torn-read checks.
pub fn current_target(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join("current")).ok()
}

/// Installs `pems` as the node's trust. Returns the new generation's
/// directory (managed) or the certificate path (explicit paths).
pub fn install(paths: &TrustPaths, pems: &Pems<'_>) -> anyhow::Result<PathBuf> {
    match managed_dir(paths) {
        Some(dir) => {
            refuse_symlinks(dir)?;
            let state = dir.parent().unwrap_or(Path::new("."));
            as_owner(owner_of(state)?, || install_generation(dir, pems))
        }
        None => as_owner(
            owner_of(paths.cert.parent().unwrap_or(Path::new(".")))?,
            || {
                for (path, bytes, mode) in [
                    (&paths.ca_bundle, pems.ca, 0o644),
                    (&paths.cert, pems.cert, 0o644),
                    (&paths.key, pems.key, 0o600),
                ] {
                    replace_file(path, bytes, mode)?;
                }
                Ok(paths.cert.clone())
            },
        ),
    }
}

/// The managed trust directory and its `generations/` must be real
/// directories: writing through a link planted there would write wherever
/// it points (as root, anywhere).
fn refuse_symlinks(dir: &Path) -> anyhow::Result<()> {
    for d in [dir.to_owned(), dir.join("generations")] {
        if std::fs::symlink_metadata(&d).is_ok_and(|m| m.file_type().is_symlink()) {
            anyhow::bail!(
                "{} is a symbolic link: trust is only written into a real directory of the state directory; remove the link (the agent recreates the directory)",
                d.display()
            );
        }
    }
    Ok(())
}

/// Runs `f` with the filesystem identity (fsuid/fsgid) of `owner` when this
/// process is root and the state directory belongs to another user (the
/// service user): what root writes there is then checked as that user's
/// writes, so a link the service user planted cannot make root write into,
/// chmod or chown anything the service user could not. Restored after.
/// See: setfsuid(2): capabilities such as CAP_DAC_OVERRIDE and CAP_CHOWN
/// leave the effective set while the fsuid is not 0.
fn as_owner<T>(owner: (u32, u32), f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    use nix::unistd::{Gid, Uid, setfsgid, setfsuid};
    if !nix::unistd::geteuid().is_root() || owner.0 == 0 {
        return f();
    }
    // NOTE: per thread; the group first, while still privileged.
    let old_gid = setfsgid(Gid::from_raw(owner.1));
    let old_uid = setfsuid(Uid::from_raw(owner.0));
    let result = f();
    setfsuid(old_uid);
    setfsgid(old_gid);
    result
}

/// [`install`] on a blocking thread, for the async tasks that got the
/// identity over the network (renewal, enrollment).
pub async fn install_off_runtime(
    paths: &TrustPaths,
    ca: Vec<u8>,
    cert: String,
    key: String,
) -> anyhow::Result<PathBuf> {
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || {
        install(
            &paths,
            &Pems {
                ca: &ca,
                cert: cert.as_bytes(),
                key: key.as_bytes(),
            },
        )
    })
    .await?
}

/// Puts the previous identity back (a renewal the controller did not
/// accept). Managed: `current` and `previous` swap; explicit paths: the
/// `*.previous` files come back.
pub fn restore_previous(paths: &TrustPaths) -> anyhow::Result<()> {
    match managed_dir(paths) {
        Some(dir) => {
            refuse_symlinks(dir)?;
            let owner = owner_of(dir)?;
            let previous = std::fs::read_link(dir.join("previous"))
                .with_context(|| format!("no previous trust generation in {}", dir.display()))?;
            let current = current_target(dir);
            switch_link(&dir.join("current"), &previous, owner)?;
            if let Some(failed) = current {
                switch_link(&dir.join("previous"), &failed, owner)?;
            }
            sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))
        }
        None => {
            for path in [&paths.ca_bundle, &paths.cert, &paths.key] {
                let previous = previous_file(path);
                if previous.exists() {
                    let old = std::fs::read(&previous)
                        .with_context(|| format!("reading {}", previous.display()))?;
                    let mode = if path == &paths.key { 0o600 } else { 0o644 };
                    atomic_write(path, &old, mode)
                        .with_context(|| format!("restoring {}", path.display()))?;
                }
            }
            Ok(())
        }
    }
}

fn owner_of(dir: &Path) -> anyhow::Result<(u32, u32)> {
    crate::util::owner_of(dir).with_context(|| format!("reading {}", dir.display()))
}

/// Gives `path` to `owner` (only root can, and only root needs to).
fn give(path: &Path, owner: (u32, u32)) -> anyhow::Result<()> {
    crate::util::give_to(path, owner)
        .with_context(|| format!("giving {} to uid {}", path.display(), owner.0))
}

/// Where the file an explicit-path install replaced is kept.
fn previous_file(path: &Path) -> std::path::PathBuf {
    path.with_extension(format!(
        "{}.previous",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ))
}

fn make_dir(path: &Path, owner: (u32, u32)) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::bail!(
            "{} is a symbolic link: trust is only written into real directories; remove the link",
            path.display()
        );
    }
    if !path.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
        give(path, owner)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", path.display()))
}

fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let owner = owner_of(dir)?;
    if path.exists() {
        let previous = previous_file(path);
        let old = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        atomic_write(&previous, &old, mode)
            .with_context(|| format!("keeping {}", previous.display()))?;
        give(&previous, owner)?;
    }
    atomic_write(path, bytes, mode).with_context(|| format!("writing {}", path.display()))?;
    give(path, owner)
}

/// Points `link` at `target` atomically (new symlink, then rename over).
fn switch_link(link: &Path, target: &Path, owner: (u32, u32)) -> anyhow::Result<()> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("creating link {}", tmp.display()))?;
    give(&tmp, owner)?;
    std::fs::rename(&tmp, link).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("switching {} to {}", link.display(), target.display())
    })
}

fn write_generation(dir: &Path, pems: &Pems<'_>, owner: (u32, u32)) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    make_dir(dir, owner)?;
    for (name, bytes, mode) in [
        (CA, pems.ca, 0o644),
        (CERT, pems.cert, 0o644),
        (KEY, pems.key, 0o600),
    ] {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        give(&path, owner)?;
    }
    sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))
}

fn new_generation_id(generations: &Path) -> String {
    let base = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "generation".into());
    (0..)
        .map(|n| {
            if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| !generations.join(id).exists())
        .unwrap_or(base)
}

fn install_generation(dir: &Path, pems: &Pems<'_>) -> anyhow::Result<PathBuf> {
    let state = dir.parent().unwrap_or(Path::new("."));
    let owner = owner_of(state)?;
    make_dir(dir, owner)?;
    let generations = dir.join("generations");
    make_dir(&generations, owner)?;
    // Trust laid down before generations existed (plain files): kept as a
    // generation of its own so that `previous` has somewhere to point.
    let legacy = [CA, CERT, KEY].map(|n| dir.join(n));
    let mut previous = current_target(dir);
    if previous.is_none() && legacy.iter().all(|p| p.is_file() && !p.is_symlink()) {
        let id = format!("{}-before", new_generation_id(&generations));
        let staging = generations.join(format!(".staging-{id}"));
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let (ca, cert, key) = (read(&legacy[0])?, read(&legacy[1])?, read(&legacy[2])?);
        publish_generation(
            &generations,
            &staging,
            &id,
            &Pems {
                ca: &ca,
                cert: &cert,
                key: &key,
            },
            owner,
        )?;
        previous = Some(PathBuf::from("generations").join(&id));
    }
    let id = new_generation_id(&generations);
    let staging = generations.join(format!(".staging-{id}"));
    publish_generation(&generations, &staging, &id, pems, owner)?;
    let target = PathBuf::from("generations").join(&id);
    if let Some(prev) = &previous {
        switch_link(&dir.join("previous"), prev, owner)?;
    }
    switch_link(&dir.join("current"), &target, owner)?;
    for name in [CA, CERT, KEY] {
        let link = dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(&Path::new("current").join(name)) {
            switch_link(&link, &Path::new("current").join(name), owner)?;
        }
    }
    sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    prune(&generations, &[Some(target.clone()), previous]);
    Ok(dir.join(target))
}

fn publish_generation(
    generations: &Path,
    staging: &Path,
    id: &str,
    pems: &Pems<'_>,
    owner: (u32, u32),
) -> anyhow::Result<()> {
    let result = write_generation(staging, pems, owner).and_then(|()| {
        std::fs::rename(staging, generations.join(id))
            .with_context(|| format!("publishing generation {id}"))?;
        sync_dir(generations).with_context(|| format!("syncing {}", generations.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

/// Removes generations other than `keep` (best effort: a leftover is
/// harmless and tried again next time).
fn prune(generations: &Path, keep: &[Option<PathBuf>]) {
    let Ok(entries) = std::fs::read_dir(generations) else {
        return;
    };
    for e in entries.flatten() {
        let rel = PathBuf::from("generations").join(e.file_name());
        if keep.iter().flatten().any(|k| *k == rel) {
            continue;
        }
        if let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!(path = %e.path().display(), %err, "could not remove an old trust generation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn paths(dir: &Path) -> TrustPaths {
        TrustPaths {
            ca_bundle: dir.join(CA),
            cert: dir.join(CERT),
            key: dir.join(KEY),
        }
    }

    fn pems<'a>(tag: &'a str) -> Pems<'a> {
        Pems {
            ca: tag.as_bytes(),
            cert: tag.as_bytes(),
            key: tag.as_bytes(),
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn install_switches_whole_generations_and_keeps_one_previous() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("trust");
        let p = paths(&dir);
        assert_eq!(managed_dir(&p), Some(dir.as_path()));
        let mut seen = Vec::new();
        for tag in ["one", "two", "three"] {
            let generation = install(&p, &pems(tag)).unwrap();
            for f in [&p.ca_bundle, &p.cert, &p.key] {
                assert_eq!(std::fs::read(f).unwrap(), tag.as_bytes());
            }
            seen.push(generation);
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("generations")), 0o700);
        assert_eq!(mode(&seen[2]), 0o700);
        assert_eq!(mode(&p.key), 0o600, "the key through the link");
        assert_eq!(
            std::fs::read(dir.join("previous").join(CERT)).unwrap(),
            b"two"
        );
        assert!(
            !seen[0].exists(),
            "generations older than previous are removed"
        );
        let left: Vec<_> = std::fs::read_dir(dir.join("generations"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 2, "current and previous, no staging leftovers");
    }

    #[test]
    fn plain_files_from_before_become_the_previous_generation() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("trust");
        std::fs::create_dir_all(&dir).unwrap();
        for n in [CA, CERT, KEY] {
            std::fs::write(dir.join(n), b"old").unwrap();
        }
        install(&paths(&dir), &pems("new")).unwrap();
        assert_eq!(std::fs::read(dir.join(CERT)).unwrap(), b"new");
        assert!(dir.join(CERT).is_symlink());
        assert_eq!(
            std::fs::read(dir.join("previous").join(KEY)).unwrap(),
            b"old"
        );
    }

    #[test]
    fn explicit_paths_are_replaced_file_by_file_keeping_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = TrustPaths {
            ca_bundle: dir.path().join("fleet-ca.pem"),
            cert: dir.path().join("me.crt"),
            key: dir.path().join("me.key"),
        };
        assert_eq!(managed_dir(&p), None);
        std::fs::write(&p.cert, b"old").unwrap();
        install(&p, &pems("new")).unwrap();
        assert_eq!(std::fs::read(&p.cert).unwrap(), b"new");
        assert_eq!(
            std::fs::read(dir.path().join("me.crt.previous")).unwrap(),
            b"old"
        );
        assert_eq!(mode(&p.key), 0o600);
    }
}
