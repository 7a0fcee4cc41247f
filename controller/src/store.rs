//! The reference controller's event store: one append-only JSON-lines log
//! per node (`<dir>/<node>.events.jsonl`). The log is also the dedup state:
//! its last complete line names the stream and the highest sequence number
//! held. An event is appended and fsynced *before* it is acknowledged, so a
//! controller killed at any point never loses an acknowledged event and
//! never stores one twice.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rakkr_protocol::message::Event;

/// One line of a node's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub node: String,
    pub stream_id: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// What became of an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored for the first time.
    New,
    /// Already held (a resend); acknowledged again, not stored.
    Duplicate,
    /// Stored, but `missing` events before it never arrived (the agent's
    /// outbox overflowed).
    AfterGap { missing: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Position {
    stream_id: u64,
    next_expected: u64,
}

/// Per-node stream positions, optionally persisted.
#[derive(Debug, Default)]
pub struct EventStore {
    dir: Option<PathBuf>,
    positions: HashMap<String, Position>,
}

fn file_name(node: &str) -> String {
    let safe = node
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !node.starts_with('.');
    if safe {
        format!("{node}.events.jsonl")
    } else {
        format!("x-{}.events.jsonl", hex::encode(node))
    }
}

impl EventStore {
    /// An in-memory store (forgets everything when dropped).
    pub fn memory() -> Self {
        Self::default()
    }

    /// A store persisted under `dir`; loads what is there. A torn last line
    /// (the controller died mid-write) is cut off.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut store = Self {
            dir: Some(dir.to_owned()),
            positions: HashMap::new(),
        };
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".events.jsonl")
                && let Some((node, pos)) = load_log(&path)?
            {
                store.positions.insert(node, pos);
            }
        }
        Ok(store)
    }

    /// The `resume_from` to put in Welcome for this node and stream.
    pub fn resume_from(&self, node: &str, stream_id: u64) -> u64 {
        match self.positions.get(node) {
            Some(p) if p.stream_id == stream_id => p.next_expected,
            _ => 0,
        }
    }

    /// Stores `event` unless it is already held. Returns only after the
    /// event is durable.
    pub fn accept(
        &mut self,
        node: &str,
        stream_id: u64,
        event: &Event,
    ) -> std::io::Result<Accepted> {
        let pos = self
            .positions
            .get(node)
            .copied()
            .filter(|p| p.stream_id == stream_id);
        let expected = pos.map_or(0, |p| p.next_expected);
        if pos.is_some() && event.seq < expected {
            return Ok(Accepted::Duplicate);
        }
        if let Some(dir) = &self.dir {
            let line = serde_json::to_string(&StoredEvent {
                node: node.to_owned(),
                stream_id,
                event: event.clone(),
            })
            .map_err(std::io::Error::other)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(file_name(node)))?;
            f.write_all(format!("{line}\n").as_bytes())?;
            f.sync_data()?;
        }
        self.positions.insert(
            node.to_owned(),
            Position {
                stream_id,
                next_expected: event.seq + 1,
            },
        );
        Ok(match pos {
            Some(_) if event.seq > expected => Accepted::AfterGap {
                missing: event.seq - expected,
            },
            _ => Accepted::New,
        })
    }

    /// Every stored event of `node`, in arrival order (persisted stores only).
    pub fn read_log(&self, node: &str) -> std::io::Result<Vec<StoredEvent>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        read_log_file(&dir.join(file_name(node)))
    }
}

/// Reads a node log; used by tools and tests.
pub fn read_log_file(path: &Path) -> std::io::Result<Vec<StoredEvent>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        match serde_json::from_str(&line?) {
            Ok(ev) => out.push(ev),
            Err(_) => break,
        }
    }
    Ok(out)
}

fn load_log(path: &Path) -> std::io::Result<Option<(String, Position)>> {
    let bytes = std::fs::read(path)?;
    let mut good_len = 0usize;
    let mut last: Option<StoredEvent> = None;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        match serde_json::from_slice::<StoredEvent>(line) {
            Ok(ev) => {
                good_len += line.len();
                last = Some(ev);
            }
            Err(_) => break,
        }
    }
    if good_len < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            cut = bytes.len() - good_len,
            "event log ends in a torn line; cutting it off"
        );
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(good_len as u64)?;
        f.sync_all()?;
    }
    Ok(last.map(|ev| {
        (
            ev.node,
            Position {
                stream_id: ev.stream_id,
                next_expected: ev.event.seq + 1,
            },
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_protocol::message::{EventBody, Origin};

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            at_ms: 1,
            body: EventBody::Annotated {
                text: format!("n{seq}"),
                origin: Origin::Local,
            },
        }
    }

    #[test]
    fn duplicates_are_recognised_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EventStore::open(dir.path()).unwrap();
        assert_eq!(s.accept("n1", 7, &ev(0)).unwrap(), Accepted::New);
        assert_eq!(s.accept("n1", 7, &ev(1)).unwrap(), Accepted::New);
        drop(s);
        let mut s = EventStore::open(dir.path()).unwrap();
        assert_eq!(s.resume_from("n1", 7), 2);
        assert_eq!(s.resume_from("n1", 8), 0);
        assert_eq!(s.accept("n1", 7, &ev(1)).unwrap(), Accepted::Duplicate);
        assert_eq!(
            s.accept("n1", 7, &ev(4)).unwrap(),
            Accepted::AfterGap { missing: 2 }
        );
        let seqs: Vec<u64> = s
            .read_log("n1")
            .unwrap()
            .iter()
            .map(|e| e.event.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 4]);
    }

    #[test]
    fn torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EventStore::open(dir.path()).unwrap();
        s.accept("n1", 7, &ev(0)).unwrap();
        let path = dir.path().join("n1.events.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"node\":\"n1\",\"str").unwrap();
        drop(f);
        let s = EventStore::open(dir.path()).unwrap();
        assert_eq!(s.resume_from("n1", 7), 1);
        assert_eq!(s.read_log("n1").unwrap().len(), 1);
    }

    #[test]
    fn odd_node_ids_get_safe_file_names() {
        assert_eq!(file_name("node_a-1"), "node_a-1.events.jsonl");
        assert_eq!(file_name("../x"), "x-2e2e2f78.events.jsonl");
    }
}
