//! The take lock: `.lock` in the take directory, flock-ed while a process
//! records the take. `recover` repairs only takes nobody holds, so it never
//! touches a take that is being recorded (by the daemon or a `record` run).

use std::path::Path;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

pub const FILE_NAME: &str = ".lock";

#[derive(Debug)]
pub struct TakeLock {
    _lock: Flock<std::fs::File>,
}

impl TakeLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        match Self::try_acquire(dir)? {
            Some(l) => Ok(l),
            None => bail!(
                "take {} is being recorded by another process (its {FILE_NAME} is locked)",
                dir.display()
            ),
        }
    }

    /// `None` when another process holds it.
    pub fn try_acquire(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(FILE_NAME);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(Self { _lock: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}
