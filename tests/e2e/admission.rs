//! What the node can carry with several takes at once, end to end with
//! the real agent on the paced 32-channel console: a timed take the disk
//! cannot hold is refused naming the space; a filling disk stops the takes
//! one at a time, newest first, every one whole; a take the writer's CPU
//! could not sustain beside the others is refused naming the CPU.
//!
//! The disk test needs root (it mounts a 64 MiB tmpfs).

use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, TakeFormat, TakeRequest};

use crate::diskfull::Tmpfs;
use crate::takes::{Rig, Setup, recording_node, recording_setup, run, started, wait_logged};

/// A WAV take (2 s segments) of `channels` (empty: all) ending after
/// `duration_ms` (0: when stopped).
fn wav(id: &str, channels: &[u16], duration_ms: u64) -> CommandBody {
    CommandBody::StartTakeWith(TakeRequest {
        take_id: id.into(),
        channels: channels.to_vec(),
        format: Some(TakeFormat::Wav),
        segment_seconds: 2,
        pre_roll_ms: 0,
        duration_ms,
        job_id: String::new(),
        start_at_ms: 0,
        end_at_ms: 0,
    })
}

fn refused(outcome: Outcome, code: FailureCode, words: &[&str]) {
    match outcome {
        Outcome::Failed(f) => {
            assert_eq!(f.code, code, "{}", f.message);
            for w in words {
                assert!(f.message.contains(w), "{w:?} not in: {}", f.message);
            }
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_stops_the_newest_take_first_and_the_archive_last() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = Tmpfs::mount(&rec, "64m");
    let rec_s = rec.display().to_string();
    // Three takes: the newest stops below 4 + 36 × 2/3 = 28 MiB, the next
    // below 4 + 36 / 2 = 22 MiB, the archive at the 4 MiB reserve.
    let Rig {
        ctl,
        feeder,
        agent: _agent,
        ..
    } = recording_node(
        tmp.path(),
        &[
            ("RAKKR_STORAGE_RECORDINGS_PATH", &rec_s),
            ("RAKKR_STORAGE_MIN_FREE_MB", "8"),
            ("RAKKR_STORAGE_WARN_FREE_MB", "40"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "4"),
        ],
    )
    .await;
    let h = ctl.handle();
    // A minute of 32 channels is 276 MB: refused before a byte is written.
    refused(
        run(&h, wav("minute", &[], 60_000)).await,
        FailureCode::InvalidArgument,
        &["needs up to 264 MiB", "storage.stop_free_mb"],
    );
    assert!(!rec.join("minute").exists(), "nothing of it on disk");
    started(&h, wav("all", &[], 0)).await;
    started(&h, wav("pair", &[5, 6], 0)).await;
    started(&h, wav("odd", &[31, 1, 9], 0)).await;
    // 32 + 2 + 3 channels of 24-bit WAV fill 5.3 MB/s: about 12 s.
    let stops = wait_logged(
        &h,
        std::time::Duration::from_secs(90),
        || "the takes did not all stop".into(),
        |log| {
            let stops: Vec<(String, String, String)> = log
                .iter()
                .filter_map(|b| match b {
                    EventBody::TakeStopped {
                        take_id,
                        status,
                        reason,
                        ..
                    } => Some((take_id.clone(), status.clone(), reason.clone())),
                    _ => None,
                })
                .collect();
            (stops.len() == 3).then_some(stops)
        },
    )
    .await;
    let order: Vec<&str> = stops.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(order, ["odd", "pair", "all"], "{stops:#?}");
    for (id, status, reason) in &stops[..2] {
        assert_eq!(status, "stopped", "{id}");
        assert!(
            reason.contains("the newest stops below") && reason.contains("older ones record on"),
            "{id}: {reason}"
        );
    }
    assert!(stops[0].2.contains("with 3 takes"), "{}", stops[0].2);
    assert!(stops[1].2.contains("with 2 takes"), "{}", stops[1].2);
    assert!(
        stops[2].2.contains("storage.stop_free_mb"),
        "the archive ends at the reserve: {}",
        stops[2].2
    );
    // Every take whole and bit-exact for its channels.
    let d = crate::takes::drops(&feeder);
    let mut frames = Vec::new();
    for id in ["odd", "pair", "all"] {
        let m = rakkr_e2e::takecheck::manifest(&rec.join(id));
        assert_eq!(m["status"], "stopped", "{id}: {m}");
        assert_eq!(m["endedBy"], "disk", "{id}");
        frames.push(rakkr_e2e::takecheck::check_content(&rec.join(id), &m, &d));
    }
    assert!(
        frames[0] < frames[1] && frames[1] < frames[2],
        "each recorded longer than the one shed before it: {frames:?}"
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_the_writer_could_not_sustain_beside_the_others_is_refused() {
    // Built before the console starts: a slow build must not outlast it.
    let faults = rakkr_e2e::update::stamped(rakkr_e2e::update::NEW, true);
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        ctl,
        feeder: _feeder,
        mut events,
        mut env,
        ..
    } = recording_setup(tmp.path(), &[], false).await;
    // The fault makes the measured encoder a thousand times slower.
    env.insert("RAKKR_FAULT".into(), "slow-encoder".into());
    let agent = crate::takes::spawn_connected(&faults, &mut events, &env).await;
    let h = ctl.handle();
    crate::takes::wait_device(&h, || agent.log().join("\n")).await;
    // The first take is never refused for CPU: alone, it records what it can.
    let take = |id: &str, channels: &[u16]| {
        CommandBody::StartTakeWith(TakeRequest {
            format: Some(TakeFormat::Flac),
            ..match wav(id, channels, 0) {
                CommandBody::StartTakeWith(r) => r,
                _ => unreachable!(),
            }
        })
    };
    started(&h, take("alone", &[1, 2, 3, 4, 5, 6, 7, 8])).await;
    refused(
        run(&h, take("beside", &[9, 10, 11, 12, 13, 14, 15, 16])).await,
        FailureCode::Busy,
        &[
            "take beside would bring the writer to",
            "% of a CPU",
            "CPUs",
        ],
    );
    crate::takes::stopped(&h, "alone").await;
    // Alone again, it starts.
    started(&h, take("beside", &[9, 10])).await;
    crate::takes::stopped(&h, "beside").await;
    assert!(
        agent
            .log()
            .iter()
            .any(|l| l.contains("encoder cost measured")),
        "the cost was measured"
    );
    ctl.shutdown().await;
}
