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
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(at: &Path, size: &str) -> Self {
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

/// A WAV take of every channel in 2 s segments.
fn wav(id: &str) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: id.into(),
        channels: 0,
        format: Some(TakeFormat::Wav),
        segment_seconds: 2,
        pre_roll_ms: 0,
    })
}

/// A file to list as the release archive (only its hash and size matter).
fn listed_archive(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let p = tmp.path().join("archive.tar.gz");
    std::fs::write(&p, b"an archive").unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_stops_the_take_cleanly_and_the_agent_lives_on() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = Tmpfs::mount(&rec, "24m");
    let rec_s = rec.display().to_string();
    let Rig {
        ctl,
        mut agent,
        feeder,
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
    let frames =
        rakkr_e2e::takecheck::check_content(&rec.join("full"), &m, &crate::takes::drops(&feeder));
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

/// Fills the filesystem of `dir` from outside, as another process would
/// (`dd if=/dev/zero of=filler`): writes until ENOSPC. Returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 << 10];
    // Bounded: a 48 MiB filesystem holds at most 768 blocks.
    for _ in 0..100_000 {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    path
}

const SMALL_GUARD: [(&str, &str); 3] = [
    ("RAKKR_STORAGE_MIN_FREE_MB", "2"),
    ("RAKKR_STORAGE_WARN_FREE_MB", "2"),
    ("RAKKR_STORAGE_STOP_FREE_MB", "1"),
];

#[test]
fn a_disk_filled_from_outside_ends_record_with_every_file_closed_and_a_true_status() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    rakkr_e2e::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("small");
    let _fs = Tmpfs::mount(&rec, "48m");
    let fifo = tmp.path().join("x32.fifo");
    let _feeder =
        rakkr_e2e::alsa::PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(120));
    let mut env: std::collections::HashMap<String, String> = [
        (
            "ALSA_CONFIG_PATH".to_owned(),
            rakkr_e2e::alsa::x32_config_for(tmp.path(), &fifo),
        ),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().join("state").display().to_string(),
        ),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
    ]
    .into();
    env.extend(SMALL_GUARD.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let args = [
        "record",
        "--device",
        "x32file",
        "--channels",
        "32",
        "--format",
        "wav",
        "--output",
        rec.to_str().unwrap(),
        "--duration",
        "60s",
        "--segment",
        "2s",
        "--take-id",
        "full",
    ];
    let mut agent = rakkr_e2e::agent::AgentProcess::spawn_args(&args, &env);
    agent.wait_log(&["segment closed", "segment=1"], 1, Duration::from_secs(30));
    let filler = fill(&rec);
    // It ends by itself, long before its 60 s (the bound only keeps a
    // broken agent from hanging the suite).
    let st = agent
        .wait_exit(Duration::from_secs(45))
        .unwrap_or_else(|| panic!("record hung on a full disk:\n{}", agent.log().join("\n")));
    assert_eq!(st.code(), Some(8), "{}", agent.log().join("\n"));
    let log = agent.log().join("\n");
    assert!(!log.contains("every file was closed"), "{log}");
    // A minute of 32 channels never fitted in 48 MiB: at the CLI the
    // operator is told, and the take records what fits.
    assert!(
        log.contains("recording anyway") && log.contains("needs up to 264 MiB"),
        "{log}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.join("full/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "stopped", "{m}");
    assert!(m["stopReason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(m["frames"].as_u64().unwrap() >= 96_000, "{m}");
    // Every file ended in the room it held: none needed repair.
    assert!(m["recovery"].is_null(), "{m}");
    assert!(!rec.join("full/.reserve").exists(), "the reserve is gone");
    std::fs::remove_file(filler).unwrap();
    let v = rakkr_e2e::agent::run_agent(
        &["takes", "verify", rec.join("full").to_str().unwrap()],
        &env,
    );
    assert!(v.status.success(), "every listed file is intact: {v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_survives_a_disk_filled_from_outside_and_records_again_when_space_is_back() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = Tmpfs::mount(&rec, "48m");
    let rec_s = rec.display().to_string();
    let mut extra = vec![("RAKKR_STORAGE_RECORDINGS_PATH", rec_s.as_str())];
    extra.extend(SMALL_GUARD);
    let crate::takes::Setup {
        feeder: _feeder,
        ctl,
        env,
        mut events,
        ..
    } = crate::takes::recording_setup(tmp.path(), &extra, false).await;
    let mut agent = crate::takes::spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    let closed = |id: &'static str| {
        move |log: &[EventBody]| {
            log.iter()
                .any(|b| matches!(b, EventBody::SegmentClosed { take_id, .. } if take_id == id))
                .then_some(())
        }
    };
    crate::takes::started(&h, wav("first")).await;
    wait_logged(
        &h,
        Duration::from_secs(30),
        || agent.log().join("\n"),
        closed("first"),
    )
    .await;
    let filler = fill(&rec);
    let (status, reason) = wait_logged(
        &h,
        Duration::from_secs(45),
        || format!("no TakeStopped; agent log:\n{}", agent.log().join("\n")),
        |log| {
            log.iter().find_map(|b| match b {
                EventBody::TakeStopped {
                    take_id,
                    status,
                    reason,
                    ..
                } if take_id == "first" => Some((status.clone(), reason.clone())),
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(status, "stopped", "{reason}");
    assert!(agent.is_running(), "the agent lives on");
    // It answers, and says no take records.
    assert!(matches!(
        run(&h, CommandBody::TakeStatus).await,
        Outcome::Done(Reply::TakeStatus { take: None, .. })
    ));
    // Space comes back: it records again.
    std::fs::remove_file(&filler).unwrap();
    crate::takes::started(&h, wav("second")).await;
    // While a take records, a signed update is refused with its own code (13).
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not an agent").unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not an agent"));
    let key = rakkr_e2e::update::ReleaseKey::shared();
    let target = rakkr_e2e::agent::target_of(&rakkr_e2e::agent_bin());
    let m =
        rakkr_e2e::update::release_manifest("2099.01.01-1", &target, &listed_archive(&tmp), &junk);
    rakkr_e2e::update::signed_manifest(key, tmp.path(), junk.clone(), m);
    let mut env = env.clone();
    env.insert("RAKKR_UPDATE_TRUSTED_KEYS".into(), key.public().into());
    let busy = rakkr_e2e::agent::run_agent(
        &[
            "update",
            "apply",
            "--artifact",
            junk.to_str().unwrap(),
            "--sha256",
            &sha,
        ],
        &env,
    );
    assert_eq!(busy.status.code(), Some(13), "{busy:?}");
    wait_logged(
        &h,
        Duration::from_secs(30),
        || agent.log().join("\n"),
        closed("second"),
    )
    .await;
    let m = crate::takes::stopped(&h, "second").await;
    assert_eq!(m["status"], "complete");
    let m1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec.join("first/manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m1["status"], "stopped",
        "the first take's manifest reached the disk"
    );
    let v = rakkr_e2e::agent::run_agent(&["takes", "verify"], &env);
    assert!(v.status.success(), "both takes intact: {v:?}");
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}
