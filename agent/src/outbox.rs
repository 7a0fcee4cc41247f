//! The bounded on-disk outbox of sequenced events.
//!
//! Layout of `<state>/outbox/`:
//! ```text
//! stream.json                 {"streamId": u64, "nextSeq": u64}  (atomically replaced)
//! 00000000000000000042.evt    one postcard-encoded `Event` per file, named by seq
//! ```
//! An event is durable (file fsynced, renamed, directory fsynced) before
//! anyone is told it exists. It is deleted only when the controller has
//! acknowledged it (cumulative `Ack`, or `Welcome.resume_from`). When more
//! than `max` events wait, the oldest are dropped and an `OutboxOverflow`
//! event says how many.
//!
//! Owned by the tokio runtime; callers use [`Outbox`] through a mutex and do
//! the blocking file work on the blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rakkr_protocol::fsutil::{atomic_write, sync_dir};
use rakkr_protocol::{Event, EventBody, Resume};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamMeta {
    stream_id: u64,
    next_seq: u64,
}

#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max: usize,
    stream_id: u64,
    next_seq: u64,
    pending: BTreeMap<u64, Event>,
}

fn event_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.evt"))
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`. Unreadable event files are
    /// moved aside, never silently deleted.
    pub fn open(dir: &Path, max: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating outbox {}", dir.display()))?;
        let meta_path = dir.join("stream.json");
        let meta: Option<StreamMeta> = match std::fs::read(&meta_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", meta_path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", meta_path.display())),
        };
        let mut pending = BTreeMap::new();
        // Highest seq of any event file, readable or not: never reused.
        let mut highest: Option<u64> = None;
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(seq) = name
                .strip_suffix(".evt")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                if name.starts_with('.') && name.contains(".tmp.") {
                    let _ = std::fs::remove_file(&path); // leftover of an interrupted write
                }
                continue;
            };
            highest = highest.max(Some(seq));
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            match postcard::from_bytes::<Event>(&bytes) {
                Ok(ev) if ev.seq == seq => {
                    pending.insert(seq, ev);
                }
                _ => {
                    let aside = path.with_extension("corrupt");
                    tracing::error!(path = %path.display(), "unreadable outbox event; moved aside");
                    std::fs::rename(&path, &aside)
                        .with_context(|| format!("moving aside {}", path.display()))?;
                }
            }
        }
        let (stream_id, floor) = match meta {
            Some(m) => (m.stream_id, m.next_seq),
            None => (fastrand::u64(1..), 0),
        };
        let next_seq = highest.map_or(floor, |s| (s + 1).max(floor));
        let mut outbox = Self {
            dir: dir.to_owned(),
            max,
            stream_id,
            next_seq,
            pending,
        };
        outbox.write_meta()?;
        Ok(outbox)
    }

    fn write_meta(&mut self) -> anyhow::Result<()> {
        let meta = StreamMeta {
            stream_id: self.stream_id,
            next_seq: self.next_seq,
        };
        let path = self.dir.join("stream.json");
        atomic_write(&path, &serde_json::to_vec(&meta)?, 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn resume(&self) -> Resume {
        Resume {
            stream_id: self.stream_id,
            next_seq: self.next_seq,
        }
    }

    /// Appends an event durably and returns it.
    pub fn push(&mut self, body: EventBody) -> anyhow::Result<Event> {
        if self.pending.len() + 1 >= self.max {
            let drop_n = self.pending.len() + 2 - self.max;
            let doomed: Vec<u64> = self.pending.keys().take(drop_n).copied().collect();
            for seq in &doomed {
                self.pending.remove(seq);
                let _ = std::fs::remove_file(event_path(&self.dir, *seq));
            }
            tracing::error!(
                dropped = drop_n,
                "outbox full: dropped the oldest unacknowledged events"
            );
            self.append(EventBody::OutboxOverflow {
                dropped: drop_n as u64,
            })?;
        }
        self.append(body)
    }

    fn append(&mut self, body: EventBody) -> anyhow::Result<Event> {
        let event = Event {
            seq: self.next_seq,
            at_ms: crate::util::now_ms(),
            body,
        };
        let path = event_path(&self.dir, event.seq);
        let bytes = postcard::to_stdvec(&event)?;
        atomic_write(&path, &bytes, 0o600)
            .with_context(|| format!("writing outbox event {}", path.display()))?;
        self.next_seq += 1;
        self.pending.insert(event.seq, event.clone());
        Ok(event)
    }

    /// Forgets every event with `seq <= up_to` (the controller holds them).
    pub fn ack(&mut self, up_to: u64) -> anyhow::Result<usize> {
        let done: Vec<u64> = self.pending.range(..=up_to).map(|(s, _)| *s).collect();
        for seq in &done {
            self.pending.remove(seq);
            let p = event_path(&self.dir, *seq);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(e)
                    .with_context(|| format!("removing acknowledged event {}", p.display()));
            }
        }
        if !done.is_empty() {
            sync_dir(&self.dir).with_context(|| format!("syncing {}", self.dir.display()))?;
            // NOTE: with no event file left, only stream.json remembers where
            // the sequence stands; otherwise the newest pending file does.
            if self.pending.is_empty() {
                self.write_meta()?;
            }
        }
        Ok(done.len())
    }

    /// Up to `limit` events waiting for acknowledgement with `seq > after`
    /// (from the oldest if `None`).
    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<Event> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        self.pending
            .range(start..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_protocol::Origin;

    fn note(t: &str) -> EventBody {
        EventBody::Annotated {
            text: t.into(),
            origin: Origin::Local,
        }
    }

    #[test]
    fn events_survive_reopen_and_acks_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        let stream = o.resume().stream_id;
        for i in 0..5 {
            assert_eq!(o.push(note(&i.to_string())).unwrap().seq, i);
        }
        o.ack(1).unwrap();
        drop(o);
        let o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(
            o.resume(),
            Resume {
                stream_id: stream,
                next_seq: 5
            }
        );
        let seqs: Vec<u64> = o
            .pending_after(None, usize::MAX)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert_eq!(o.pending_after(Some(3), usize::MAX).len(), 1);
        assert_eq!(o.pending_after(None, 2).len(), 2);
    }

    #[test]
    fn sequence_never_goes_back_after_everything_is_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        o.push(note("a")).unwrap();
        o.push(note("b")).unwrap();
        o.ack(1).unwrap();
        drop(o);
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(o.push(note("c")).unwrap().seq, 2);
    }

    #[test]
    fn overflow_drops_oldest_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 16).unwrap();
        for i in 0..40 {
            o.push(note(&i.to_string())).unwrap();
        }
        assert!(o.len() <= 16);
        let all = o.pending_after(None, usize::MAX);
        assert!(
            all.iter()
                .any(|e| matches!(e.body, EventBody::OutboxOverflow { .. }))
        );
        assert!(
            matches!(&all.last().unwrap().body, EventBody::Annotated { text, .. } if text == "39")
        );
    }

    #[test]
    fn corrupt_event_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        o.push(note("a")).unwrap();
        drop(o);
        std::fs::write(event_path(dir.path(), 0), b"garbage").unwrap();
        let o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(o.len(), 0);
        assert!(dir.path().join(format!("{:020}.corrupt", 0)).exists());
        assert_eq!(o.resume().next_seq, 1);
    }
}
