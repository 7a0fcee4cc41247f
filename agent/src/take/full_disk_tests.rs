//! A take on a disk that another process fills and keeps filling: the
//! take stops by itself, every file ends whole, the final manifest lands.
//! Needs root (a small tmpfs); skipped otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::encoder::Container;
use super::encoder::tests::signal;
use super::manifest::{Manifest, TakeStatus};
use super::writer::{Ending, Take, TakeEvent};

struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to mount a small tmpfs");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Writes into `path` until `stop`, taking any space that frees up (like
/// a `dd` that retries, or a log that never stops). `full` is set once it
/// first met ENOSPC. Bounded: at most 2,000,000 attempts.
fn keep_filling(path: PathBuf, full: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4 << 10];
    for _ in 0..2_000_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if f.write_all(&chunk).is_err() {
            full.store(true, Ordering::Release);
            std::thread::yield_now();
        }
    }
}

#[test]
fn a_disk_filled_by_a_writer_that_never_stops_still_takes_every_last_write() {
    let Some(fs) = SmallFs::mount("24m") else {
        return;
    };
    let channels = 8;
    let mut spec = super::writer::tests::spec(fs.path(), u64::MAX);
    spec.container = Container::Wav;
    spec.channel_names = (1..=channels).map(|c| format!("Ch{c}")).collect();
    let mut take = Take::start(spec).unwrap();
    let mut events = Vec::new();
    let block = signal(channels, 1_024);
    for _ in 0..47 {
        assert!(take.write(&block, &mut events).unwrap().is_none());
    }
    let (full, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let filler = {
        let (path, full, stop) = (fs.path().join("filler"), full.clone(), stop.clone());
        std::thread::spawn(move || keep_filling(path, full, stop))
    };
    // Bounded: 60 s at most (a 24 MiB tmpfs fills in milliseconds).
    for _ in 0..60_000 {
        if full.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(full.load(Ordering::Acquire), "the filler filled the disk");
    // Bounded: 20 s of audio; a renewal fails within 8,192 frames.
    let mut why = None;
    let mut blocks = 47u64;
    for _ in 0..940 {
        match take.write(&block, &mut events) {
            Ok(None) => blocks += 1,
            Ok(Some(stop)) => {
                blocks += 1;
                why = Some(stop.0);
                break;
            }
            Err(e) => panic!("a write failed instead of the take stopping: {e:#}"),
        }
    }
    let why = why.expect("the take asked to stop on a full disk");
    assert!(why.contains("disk is full"), "{why}");
    // The filler still runs while the take closes.
    let f = take.finish(Ending::early("disk", why), &mut events);
    stop.store(true, Ordering::Relaxed);
    filler.join().unwrap();
    f.persisted.expect("the final manifest is on disk");
    let m = Manifest::read(&fs.path().join("t1")).unwrap();
    assert_eq!(m.status, TakeStatus::Stopped);
    assert!(
        m.recovery.is_none(),
        "no file needed repair: {:?}",
        m.recovery
    );
    assert_eq!(
        m.frames,
        blocks * 1_024,
        "every frame written is in the take"
    );
    assert_eq!(m.files.len(), channels);
    for f in &m.files {
        assert_eq!(f.samples, blocks * 1_024, "{}", f.file);
        let path = fs.path().join("t1").join(&f.file);
        assert_eq!(
            crate::util::sha256_file(&path).unwrap().0,
            f.sha256,
            "{}",
            f.file
        );
    }
    assert!(!fs.path().join("t1/.reserve").exists());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TakeEvent::SegmentClosed { segment: 1, .. }))
    );
}
