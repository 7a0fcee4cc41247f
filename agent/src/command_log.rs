//! Controller commands: run each id once. Results are kept (the last
//! [`KEEP`]) in `<state>/commands.log`, so a repeated id — after a reconnect
//! or a restart — gets the first result back instead of acting twice.
//!
//! The log is append-only: one JSON line per result, appended and
//! fdatasync'ed (a small write, whatever the log holds), compacted to the
//! last [`KEEP`] once it holds twice that. Each line is at most
//! [`ENTRY_MAX`] bytes: a larger result is kept without its bulky part (a
//! manifest or inventory the controller already got), or as a note. A torn
//! last line (power cut mid-append) is skipped at open.
//!
//! NOTE: a result is stored after its action; a crash between the two can
//! repeat the action once on resend. Actions added later that must never
//! repeat record their intent first.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rakkr_protocol::fsutil::atomic_write;
use rakkr_protocol::{CommandResult, Failure, FailureCode, Outcome, Reply};

/// How many results are remembered.
pub const KEEP: usize = 1024;
/// Longest stored line, in bytes.
pub const ENTRY_MAX: usize = 4096;
/// The file name of the log in the state directory.
pub const FILE_NAME: &str = "commands.log";
/// The whole-file store of earlier versions, read once and replaced.
const OLD_FILE_NAME: &str = "commands.json";

#[derive(Debug)]
pub struct CommandLog {
    path: PathBuf,
    results: VecDeque<CommandResult>,
    /// Lines in the file (compaction is due at `2 * KEEP`).
    lines: usize,
}

impl CommandLog {
    /// Opens (or creates) the log in `state`.
    pub fn open(state: &Path) -> anyhow::Result<Self> {
        let path = state.join(FILE_NAME);
        let mut results = VecDeque::new();
        let mut lines = 0;
        match std::fs::read(&path) {
            Ok(b) => {
                for line in b.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                    lines += 1;
                    match serde_json::from_slice(line) {
                        Ok(r) => results.push_back(r),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable line of the command log")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        while results.len() > KEEP {
            results.pop_front();
        }
        let mut log = Self {
            path,
            results,
            lines,
        };
        log.migrate(&state.join(OLD_FILE_NAME))?;
        Ok(log)
    }

    /// Takes over the results of the whole-file store of earlier versions.
    fn migrate(&mut self, old: &Path) -> anyhow::Result<()> {
        let Ok(b) = std::fs::read(old) else {
            return Ok(());
        };
        let old_results: VecDeque<CommandResult> = serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(path = %old.display(), error = %e, "old command log unreadable; its results are not kept");
            VecDeque::new()
        });
        for r in old_results.into_iter().rev().take(KEEP).rev() {
            self.results.push_front(r);
        }
        while self.results.len() > KEEP {
            self.results.pop_front();
        }
        self.compact()?;
        std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))
    }

    pub fn get(&self, id: &str) -> Option<&CommandResult> {
        self.results.iter().find(|r| r.id == id)
    }

    /// Remembers `result` durably (one appended line).
    pub fn record(&mut self, result: CommandResult) -> anyhow::Result<()> {
        let stored = bounded(result);
        let mut line = serde_json::to_vec(&stored)?;
        line.push(b'\n');
        self.results.push_back(stored);
        while self.results.len() > KEEP {
            self.results.pop_front();
        }
        if self.lines + 1 >= 2 * KEEP {
            return self.compact();
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("appending to {}", self.path.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Rewrites the file with the remembered results only.
    fn compact(&mut self) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        for r in &self.results {
            serde_json::to_writer(&mut bytes, r)?;
            bytes.push(b'\n');
        }
        atomic_write(&self.path, &bytes, 0o600)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.lines = self.results.len();
        Ok(())
    }
}

/// `r` as it is stored: within [`ENTRY_MAX`] once serialised.
fn bounded(mut r: CommandResult) -> CommandResult {
    let len = |r: &CommandResult| serde_json::to_vec(r).map_or(usize::MAX, |v| v.len());
    if len(&r) <= ENTRY_MAX {
        return r;
    }
    match &mut r.outcome {
        Outcome::Done(Reply::TakeStopped { manifest_json, .. }) => manifest_json.clear(),
        Outcome::Done(Reply::Inventory { json }) => json.clear(),
        _ => {}
    }
    if len(&r) <= ENTRY_MAX && r.id.len() <= rakkr_protocol::limits::COMMAND_ID_MAX {
        return r;
    }
    CommandResult {
        id: rakkr_protocol::limits::truncated(&r.id, rakkr_protocol::limits::COMMAND_ID_MAX)
            .to_owned(),
        outcome: Outcome::Failed(Failure {
            code: FailureCode::Internal,
            message: "this command already ran; its result was too large to keep".into(),
        }),
    }
}

pub fn failed(id: &str, code: FailureCode, message: impl Into<String>) -> CommandResult {
    CommandResult {
        id: id.to_owned(),
        outcome: Outcome::Failed(Failure {
            code,
            message: message.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_reopen_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = CommandLog::open(dir.path()).unwrap();
        for i in 0..(2 * KEEP + 5) {
            log.record(CommandResult {
                id: format!("c{i}"),
                outcome: Outcome::Done(Reply::Annotated { seq: i as u64 }),
            })
            .unwrap();
        }
        let log = CommandLog::open(dir.path()).unwrap();
        assert!(log.get(&format!("c{}", KEEP + 4)).is_none());
        assert!(log.get(&format!("c{}", KEEP + 5)).is_some());
        assert_eq!(
            log.get("c2052").unwrap().outcome,
            Outcome::Done(Reply::Annotated { seq: 2052 })
        );
        let lines = std::fs::read_to_string(dir.path().join(FILE_NAME))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 2 * KEEP, "compacted: {lines} lines");
    }

    #[test]
    fn appending_does_not_rewrite_and_entries_stay_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = CommandLog::open(dir.path()).unwrap();
        log.record(CommandResult {
            id: "big".into(),
            outcome: Outcome::Done(Reply::Inventory {
                json: "x".repeat(1 << 20),
            }),
        })
        .unwrap();
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size as usize <= ENTRY_MAX + 1, "{size}");
        log.record(CommandResult {
            id: "small".into(),
            outcome: Outcome::Done(Reply::Annotated { seq: 1 }),
        })
        .unwrap();
        let after = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(
            after > size && after < size + 200,
            "appended, not rewritten"
        );
        // A torn last line (a power cut mid-append) is skipped.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        f.write_all(b"{\"id\":\"torn").unwrap();
        let log = CommandLog::open(dir.path()).unwrap();
        assert!(log.get("small").is_some() && log.get("big").is_some());
    }

    #[test]
    fn the_old_whole_file_store_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let old = vec![CommandResult {
            id: "old-1".into(),
            outcome: Outcome::Done(Reply::Annotated { seq: 7 }),
        }];
        std::fs::write(
            dir.path().join(OLD_FILE_NAME),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let log = CommandLog::open(dir.path()).unwrap();
        assert!(log.get("old-1").is_some());
        assert!(!dir.path().join(OLD_FILE_NAME).exists());
        assert!(CommandLog::open(dir.path()).unwrap().get("old-1").is_some());
    }
}
