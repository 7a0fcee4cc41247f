//! A small filesystem filling up during a take: the agent warns, then
//! closes every file before the disk is full and stops the take with an
//! event; every file stays readable and bit-exact; the agent lives on and
//! refuses a new take while space is short.
//!
//! Needs root (it mounts a 24 MiB tmpfs), as the CI machines provide.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply, StartTake, TakeFormat};

use crate::T;
use crate::takes::{Rig, recording_node, run, wait_logged};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs at {} needs root",
            at.display()
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_stops_the_take_cleanly_and_the_agent_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = Tmpfs::mount(&rec, "24m");
    let rec_s = rec.display().to_string();
    let Rig {
        ctl,
        mut agent,
        _feeder,
        ..
    } = recording_node(
        tmp.path(),
        &[
            ("RAKKR_STORAGE_RECORDINGS_PATH", &rec_s),
            ("RAKKR_STORAGE_MIN_FREE_MB", "12"),
            ("RAKKR_STORAGE_WARN_FREE_MB", "14"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "4"),
        ],
    )
    .await;
    let h = ctl.handle();
    let wav = |id: &str| {
        CommandBody::StartTake(StartTake {
            take_id: id.into(),
            channels: 0,
            format: Some(TakeFormat::Wav),
            segment_seconds: 2,
            pre_roll_ms: 0,
        })
    };
    assert!(matches!(
        run(&h, wav("full")).await,
        Outcome::Done(Reply::Take { .. })
    ));
    // 32 × 24-bit WAV is 4.6 MB/s: 20 MiB of room takes about 4.5 s.
    let (low, stopped) = wait_logged(
        &h,
        Duration::from_secs(30),
        || format!("no TakeStopped; agent log:\n{}", agent.log().join("\n")),
        |log| {
            let low = log
                .iter()
                .position(|b| matches!(b, EventBody::DiskLow { .. }));
            log.iter()
                .find_map(|b| match b {
                    EventBody::TakeStopped {
                        status,
                        reason,
                        manifest_json,
                        ..
                    } => Some((status.clone(), reason.clone(), manifest_json.clone())),
                    _ => None,
                })
                .map(|s| (low, s))
        },
    )
    .await;
    let (status, reason, manifest_json) = stopped;
    assert_eq!(status, "stopped");
    assert!(
        reason.contains("disk almost full") && reason.contains("storage.stop_free_mb"),
        "{reason}"
    );
    let m: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
    assert_eq!(m["status"], "stopped");
    // Every file closed, readable and bit-exact.
    let frames = rakkr_e2e::takecheck::check_content(&rec.join("full"), &m);
    assert!(frames > 48_000, "{frames}");
    assert!(low.is_some(), "a DiskLow event came first");
    assert!(agent.is_running(), "the agent lives on");
    // It answers, and refuses a new take while the disk is short, saying why.
    match run(&h, wav("again")).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument);
            assert!(f.message.contains("storage.min_free_mb"), "{}", f.message);
        }
        other => panic!("a take started on a full disk: {other:?}"),
    }
    assert!(matches!(
        run(&h, CommandBody::TakeStatus).await,
        Outcome::Done(Reply::TakeStatus {
            take: None,
            device_ok: true,
            ..
        })
    ));
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}
