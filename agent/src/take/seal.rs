//! Hashing closed segments off the writer thread.
//!
//! A closed segment's files are final on disk, but hashing them means
//! reading them back whole: an hour of 32 channels is gigabytes, which takes
//! seconds even with SHA extensions and minutes on a small ARM box or once
//! the page cache has dropped them. The writer thread must go back to the
//! capture ring at once (it holds 2 s), so one sealer thread per take hashes
//! segments in the order they closed and the take collects the results
//! between blocks (`ready`) and at its end (`wait_all`).
//!
//! Threads: the take's writer thread owns the `Sealer` (sends jobs, reads
//! results); the sealer thread owns nothing but the job it works on.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use anyhow::Context;

use super::manifest::FileEntry;
use super::segment::sha256_file;

/// A closed segment whose files have been hashed.
#[derive(Debug)]
pub struct Sealed {
    pub segment: u32,
    /// The segment's files, `sha256` set where hashing worked.
    pub files: Vec<FileEntry>,
    /// Files that could not be read back, with why (`sha256` left empty).
    pub failed: Vec<(String, String)>,
}

struct Job {
    segment: u32,
    dir: PathBuf,
    files: Vec<FileEntry>,
}

pub struct Sealer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Sealed>,
    thread: Option<JoinHandle<()>>,
    /// Segments sent to the thread and not collected yet.
    pending: usize,
    /// Segments hashed here because the thread was gone.
    inline: Vec<Sealed>,
}

fn seal(job: Job) -> Sealed {
    let mut failed = Vec::new();
    let mut files = job.files;
    for f in &mut files {
        match sha256_file(&job.dir.join(&f.file)) {
            Ok(sha) => f.sha256 = sha,
            Err(e) => failed.push((f.file.clone(), format!("{e:#}"))),
        }
    }
    Sealed {
        segment: job.segment,
        files,
        failed,
    }
}

impl Sealer {
    pub fn start(take_id: &str) -> anyhow::Result<Self> {
        let (jobs, rx) = channel::<Job>();
        let (tx, done) = channel();
        let thread = std::thread::Builder::new()
            .name(format!("seal-{take_id}").chars().take(15).collect())
            .spawn(move || {
                for job in rx {
                    if tx.send(seal(job)).is_err() {
                        return;
                    }
                }
            })
            .context("starting the thread that hashes closed segments")?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            pending: 0,
            inline: Vec::new(),
        })
    }

    /// Queues the (finished, fsynced) files of `segment` for hashing.
    pub fn submit(&mut self, segment: u32, dir: PathBuf, files: Vec<FileEntry>) {
        let job = Job {
            segment,
            dir,
            files,
        };
        let job = match self.jobs.as_ref() {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => {
                    self.pending += 1;
                    return;
                }
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // NOTE: the sealer thread is gone only if it panicked; hash here
        // rather than lose the hashes (slow, but correct).
        tracing::error!(
            segment,
            "the hashing thread is gone; hashing on the writer thread"
        );
        self.inline.push(seal(job));
    }

    /// Segments hashed since the last call (never blocks).
    pub fn ready(&mut self) -> Vec<Sealed> {
        let mut out = std::mem::take(&mut self.inline);
        let from_thread: Vec<Sealed> = self.done.try_iter().collect();
        self.pending -= from_thread.len();
        out.extend(from_thread);
        out
    }

    /// Waits for every queued segment.
    pub fn wait_all(&mut self) -> Vec<Sealed> {
        let mut out = std::mem::take(&mut self.inline);
        while self.pending > 0 {
            match self.done.recv() {
                Ok(s) => {
                    out.push(s);
                    self.pending -= 1;
                }
                Err(_) => {
                    tracing::error!(
                        segments = self.pending,
                        "the hashing thread died; those segments stay unhashed in the manifest"
                    );
                    self.pending = 0;
                }
            }
        }
        out
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread after its last job.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str, segment: u32) -> FileEntry {
        FileEntry {
            file: file.into(),
            segment,
            channels: vec![1],
            name: "x".into(),
            first_sample: 0,
            samples: 1,
            sha256: String::new(),
        }
    }

    #[test]
    fn segments_are_hashed_in_order_and_unreadable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"abc").unwrap();
        std::fs::write(dir.path().join("b"), b"").unwrap();
        let mut s = Sealer::start("t").unwrap();
        s.submit(1, dir.path().into(), vec![entry("a", 1), entry("gone", 1)]);
        s.submit(2, dir.path().into(), vec![entry("b", 2)]);
        let mut got = s.ready();
        got.extend(s.wait_all());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].segment, 1);
        assert_eq!(
            got[0].files[0].sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(got[0].files[1].sha256, "");
        assert_eq!(got[0].failed.len(), 1);
        assert_eq!(got[0].failed[0].0, "gone");
        assert!(got[0].failed[0].1.contains("gone"), "{:?}", got[0].failed);
        assert_eq!(got[1].segment, 2);
        assert_eq!(
            got[1].files[0].sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(s.wait_all().is_empty());
    }
}
