//! Controller commands: run each id once. Results are kept (the last
//! [`KEEP`]) in `<state>/commands.json`, so a repeated id — after a reconnect
//! or a restart — gets the first result back instead of acting twice.
//!
//! NOTE: a result is stored after its action; a crash between the two can
//! repeat the action once on resend. Actions added later that must never
//! repeat record their intent first.

use std::collections::VecDeque;
use std::path::PathBuf;

use anyhow::Context;
use rakkr_protocol::fsutil::atomic_write;
use rakkr_protocol::{CommandResult, Failure, FailureCode, Outcome};

/// How many results are remembered.
pub const KEEP: usize = 1024;

#[derive(Debug)]
pub struct CommandLog {
    path: PathBuf,
    results: VecDeque<CommandResult>,
}

impl CommandLog {
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let results = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(r) => r,
                Err(e) => {
                    // Losing the dedup memory is safer than refusing to start.
                    tracing::error!(path = %path.display(), error = %e, "command log unreadable; starting a new one");
                    VecDeque::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self { path, results })
    }

    pub fn get(&self, id: &str) -> Option<&CommandResult> {
        self.results.iter().find(|r| r.id == id)
    }

    pub fn record(&mut self, result: CommandResult) -> anyhow::Result<()> {
        self.results.push_back(result);
        while self.results.len() > KEEP {
            self.results.pop_front();
        }
        let bytes = serde_json::to_vec(&self.results)?;
        atomic_write(&self.path, &bytes, 0o600)
            .with_context(|| format!("writing {}", self.path.display()))
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
    use rakkr_protocol::Reply;

    #[test]
    fn results_survive_reopen_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("commands.json");
        let mut log = CommandLog::open(p.clone()).unwrap();
        for i in 0..(KEEP + 5) {
            log.record(CommandResult {
                id: format!("c{i}"),
                outcome: Outcome::Done(Reply::Annotated { seq: i as u64 }),
            })
            .unwrap();
        }
        let log = CommandLog::open(p).unwrap();
        assert!(log.get("c4").is_none());
        assert!(log.get("c5").is_some());
        assert_eq!(
            log.get("c1028").unwrap().outcome,
            Outcome::Done(Reply::Annotated { seq: 1028 })
        );
    }
}
