//! Several takes at once from one capture, end to end with the real agent
//! daemon on the paced 32-channel console: an archive take of every
//! channel runs while shorter takes on chosen channels start and stop (or
//! end by themselves) inside it; each is bit-exact for exactly its
//! channels, the archive has no seam; the concurrency limit refuses a
//! take naming it; a take with a duration ends on time while the link is
//! down and is reported when it returns; `kill -9` with three takes
//! recording leaves three recovered takes, and all three go on (the timed
//! one still ends on time).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use rakkr_controller::{Controller, ControllerConfig, ControllerEvent};
use rakkr_e2e::takecheck::{check_content, manifest, signal_at};
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply, TakeRequest};

use crate::takes::{Rig, drops, logged, recording_node, run, started, stopped};

fn with(take_id: &str, channels: &[u16], duration_ms: u64, job: &str) -> CommandBody {
    at(take_id, channels, duration_ms, job, 0, 0)
}

fn at(
    take_id: &str,
    channels: &[u16],
    duration_ms: u64,
    job: &str,
    start_at_ms: u64,
    end_at_ms: u64,
) -> CommandBody {
    CommandBody::StartTakeWith(TakeRequest {
        take_id: take_id.into(),
        channels: channels.to_vec(),
        format: None,
        segment_seconds: 1,
        pre_roll_ms: 0,
        duration_ms,
        job_id: job.into(),
        start_at_ms,
        end_at_ms,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits for take `id`'s TakeStopped event in the controller's log.
async fn ended(h: &rakkr_controller::ControllerHandle, id: &str) -> (String, u64) {
    let deadline = tokio::time::Instant::now() + 2 * crate::T;
    loop {
        if let Some(e) = logged(h).into_iter().find_map(|b| match b {
            EventBody::TakeStopped {
                take_id,
                status,
                frames,
                ..
            } if take_id == id => Some((status, frames)),
            _ => None,
        }) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "take {id} never reported stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until take `id` has recorded `frames` frames.
async fn recorded(h: &rakkr_controller::ControllerHandle, id: &str, frames: u64) {
    let deadline = tokio::time::Instant::now() + crate::T;
    loop {
        if let Outcome::Done(Reply::Running { takes, .. }) = run(h, CommandBody::RunningTakes).await
            && takes
                .iter()
                .any(|t| t.take.take_id == id && t.take.frames >= frames)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "take {id} did not reach {frames} frames"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_on_chosen_channels_run_inside_an_archive_take_each_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        env,
        ..
    } = recording_node(tmp.path(), &[("RAKKR_CAPTURE_MAX_TAKES", "3")]).await;
    let h = ctl.handle();
    let archive = started(&h, with("archive", &[], 0, "job-archive")).await;
    assert_eq!(archive.channels, 32);
    recorded(&h, "archive", 24_000).await;
    let sermon = started(&h, with("sermon", &[1, 2], 1_500, "job-sermon")).await;
    let choir = started(&h, with("choir", &[17, 18, 19, 20, 21, 22, 23, 24], 0, "")).await;
    assert_eq!((sermon.channels, choir.channels), (2, 8));

    // Everything recording is listed, with its channels and job.
    let Outcome::Done(Reply::Running {
        takes, device_ok, ..
    }) = run(&h, CommandBody::RunningTakes).await
    else {
        panic!("RunningTakes failed");
    };
    assert!(device_ok);
    let listed: Vec<(&str, &[u16], &str, u64)> = takes
        .iter()
        .map(|t| {
            (
                t.take.take_id.as_str(),
                t.device_channels.as_slice(),
                t.job_id.as_str(),
                t.duration_frames,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "archive",
                (1..=32).collect::<Vec<u16>>().as_slice(),
                "job-archive",
                0
            ),
            ("sermon", &[1, 2][..], "job-sermon", 72_000),
            ("choir", &[17, 18, 19, 20, 21, 22, 23, 24][..], "", 0),
        ]
    );

    // The CLI says the same: `status` asks the daemon, `takes` reads the
    // manifests.
    let out = rakkr_e2e::agent::run_agent(&["status", "--json"], &env);
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = status["takes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["take"]["take_id"].as_str())
        .collect();
    // (The sermon's 1.5 s may be over by now.)
    assert!(
        ids.starts_with(&["archive"]) && ids.ends_with(&["choir"]),
        "{status}"
    );
    let out = rakkr_e2e::agent::run_agent(&["takes", "--json"], &env);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let choir_line = lines
        .iter()
        .find(|l| l["takeId"] == "choir")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(choir_line["status"], "recording");
    assert_eq!(
        choir_line["deviceChannels"],
        serde_json::json!([17, 18, 19, 20, 21, 22, 23, 24])
    );
    let sermon_line = lines.iter().find(|l| l["takeId"] == "sermon").unwrap();
    assert_eq!(sermon_line["jobId"], "job-sermon");
    assert!(sermon_line["endsAtMs"].as_u64().is_some(), "{sermon_line}");

    // Over the limit: refused, naming it. A plain StartTake (a controller
    // that knows one take at a time) is refused while takes record.
    match run(&h, with("fourth", &[3], 0, "")).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::Busy);
            assert!(f.message.contains("capture.max_takes = 3"), "{}", f.message);
        }
        other => panic!("a fourth take was not refused: {other:?}"),
    }
    match run(&h, crate::takes::start("plain")).await {
        Outcome::Failed(f) => assert_eq!(f.code, FailureCode::Busy, "{}", f.message),
        other => panic!("a plain StartTake was not refused: {other:?}"),
    }
    // A stop must name its take when several record.
    match run(
        &h,
        CommandBody::StopTake {
            take_id: String::new(),
        },
    )
    .await
    {
        Outcome::Failed(f) => assert!(f.message.contains("name the one"), "{}", f.message),
        other => panic!("an unnamed stop was not refused: {other:?}"),
    }

    // The sermon ends by itself, exactly on its duration.
    assert_eq!(ended(&h, "sermon").await, ("complete".into(), 72_000));
    recorded(&h, "choir", 48_000).await;
    let choir_m = stopped(&h, "choir").await;
    recorded(&h, "archive", 150_000).await;
    let archive_m = stopped(&h, "archive").await;

    // Each take holds exactly its channels of the known signal, without a
    // seam, and lies inside the archive.
    let d = drops(&feeder);
    let archive_dir = Path::new(&archive.dir);
    check_content(archive_dir, &archive_m, &d);
    assert!(
        archive_m["gaps"].as_array().unwrap().is_empty(),
        "{archive_m}"
    );
    let sermon_dir = Path::new(&sermon.dir);
    let sermon_m = manifest(sermon_dir);
    assert_eq!(sermon_m["jobId"], "job-sermon");
    assert_eq!(sermon_m["channels"], 2);
    assert_eq!(check_content(sermon_dir, &sermon_m, &d), 72_000);
    let choir_dir = Path::new(&choir.dir);
    assert_eq!(
        choir_m["deviceChannels"],
        serde_json::json!([17, 18, 19, 20, 21, 22, 23, 24])
    );
    assert_eq!(choir_m["files"][0]["file"], "01-Input_17-s001.flac");
    check_content(choir_dir, &choir_m, &d);
    // Spans on the device's timeline (the signal counts frames mod 2^18;
    // these takes are all far shorter).
    let on_archive = |dir: &Path, m: &serde_json::Value| {
        let start = signal_at(archive_dir, &archive_m, false);
        let at = |last| (signal_at(dir, m, last) + (1 << 18) - start) % (1 << 18);
        (at(false), at(true))
    };
    let archive_len = archive_m["frames"].as_u64().unwrap();
    for (name, dir, m) in [
        ("sermon", sermon_dir, &sermon_m),
        ("choir", choir_dir, &choir_m),
    ] {
        let (first, last) = on_archive(dir, m);
        assert!(
            first >= 24_000 && last < archive_len,
            "{name} spans {first}..={last} of the archive's {archive_len} frames"
        );
        assert_eq!(last - first + 1, m["frames"].as_u64().unwrap(), "{name}");
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_with_a_duration_ends_on_time_while_the_link_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder: _feeder,
        pki,
        store,
        ctl,
        agent: _agent,
        ..
    } = recording_node(tmp.path(), &[]).await;
    let addr = ctl.local_addr();
    let h = ctl.handle();
    let take = started(&h, with("timed", &[1, 2, 3, 4], 3_000, "job-t")).await;
    // The link goes down at once and stays down past the take's end.
    ctl.shutdown().await;
    let dir = Path::new(&take.dir);
    rakkr_e2e::wait_until(2 * crate::T, "the take to end on the node", || {
        std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|m| m["status"] == "complete")
    });
    let m = manifest(dir);
    assert_eq!(
        (m["frames"].as_u64(), m["endedBy"].as_str()),
        (Some(144_000), Some("duration"))
    );
    // The controller comes back: the take's events arrive.
    let mut cfg = ControllerConfig::new(addr, pki.server_config());
    cfg.store = Some(store);
    cfg.heartbeat = Duration::from_millis(500);
    let ctl = Controller::start(cfg)
        .await
        .expect("the controller restarts");
    let mut events = ctl.handle().subscribe();
    rakkr_e2e::wait_for(&mut events, crate::T, "Connected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    assert_eq!(
        ended(&ctl.handle(), "timed").await,
        ("complete".into(), 144_000)
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_three_takes_recording_recovers_all_three_and_all_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        mut agent,
        env,
        ..
    } = recording_node(tmp.path(), &[]).await;
    let h = ctl.handle();
    // "odd" ends by itself 30 s from now, crash or not: room for a slow
    // restart before its continuation must have recorded a second.
    let takes = [
        started(&h, with("all", &[], 0, "job-a")).await,
        started(&h, with("pair", &[5, 6], 0, "job-p")).await,
        started(&h, with("odd", &[31, 1, 9], 30_000, "job-o")).await,
    ];
    // Each has a closed segment and more.
    for t in &takes {
        recorded(&h, &t.take_id, 72_000).await;
    }
    agent.signal(Signal::SIGKILL);
    assert!(agent.wait_exit(crate::T).is_some());
    // Started again, the agent recovers all three and continues each.
    let _agent =
        crate::takes::spawn_connected(&rakkr_e2e::agent_bin(), &mut h.subscribe(), &env).await;
    for t in &takes {
        recorded(&h, &format!("{}-r2", t.take_id), 48_000).await;
    }
    let running = match run(&h, CommandBody::RunningTakes).await {
        Outcome::Done(Reply::Running { takes, .. }) => takes,
        other => panic!("{other:?}"),
    };
    let of = |id: &str| {
        running
            .iter()
            .find(|t| t.take.take_id == id)
            .map(|t| (t.device_channels.clone(), t.job_id.clone()))
            .unwrap_or_else(|| panic!("{id} is not running: {running:?}"))
    };
    assert_eq!(of("all-r2"), ((1..=32).collect::<Vec<_>>(), "job-a".into()));
    assert_eq!(of("pair-r2"), (vec![5, 6], "job-p".into()));
    assert_eq!(of("odd-r2"), (vec![31, 1, 9], "job-o".into()));
    // The timed one ends when the take it continues would have.
    assert_eq!(ended(&h, "odd-r2").await.0, "complete");
    let recordings = tmp.path().join("state/recordings");
    let (odd, odd2) = (
        manifest(&recordings.join("odd")),
        manifest(&recordings.join("odd-r2")),
    );
    assert_eq!(odd2["endedBy"], "duration", "{odd2}");
    let (end, end2) = (
        odd["endsAtMs"].as_u64().unwrap(),
        odd2["endsAtMs"].as_u64().unwrap(),
    );
    assert!(
        end.abs_diff(end2) <= 2,
        "ends at {end2}, was to end at {end}"
    );
    let mut finals = vec![("odd-r2".to_string(), odd2)];
    for id in ["all-r2", "pair-r2"] {
        finals.push((id.into(), crate::takes::stopped(&h, id).await));
    }
    let d = drops(&feeder);
    for t in &takes {
        let dir = Path::new(&t.dir);
        let m = manifest(dir);
        assert_eq!(m["status"], "recovered", "{}: {m}", t.take_id);
        let frames = check_content(dir, &m, &d);
        assert!(frames >= 48_000, "{}: {frames} frames recovered", t.take_id);
    }
    for (id, m) in &finals {
        assert_eq!(m["status"], "complete", "{id}: {m}");
        assert_eq!(m["continues"], id.trim_end_matches("-r2"), "{id}");
        check_content(&recordings.join(id), m, &d);
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_start_and_end_at_the_controllers_times() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        ..
    } = recording_node(tmp.path(), &[("RAKKR_CAPTURE_PRE_ROLL_SECONDS", "2")]).await;
    let h = ctl.handle();
    let now = now_ms();
    // Ahead: scheduled, listed without a directory yet; it starts on its
    // frame and ends at its end time, exactly 2 s later.
    let later = started(&h, at("later", &[3, 4], 0, "", now + 1_500, now + 3_500)).await;
    assert!(later.dir.is_empty(), "not started yet: {later:?}");
    // Behind: starts now, reaching back through the pre-roll.
    let earlier = started(&h, at("earlier", &[], 0, "", now - 500, 0)).await;
    assert!(
        earlier.pre_roll_frames > 0 && earlier.pre_roll_frames <= 24_000,
        "{earlier:?}"
    );
    // Far ahead, then cancelled.
    let never = started(&h, at("never", &[], 0, "", now + 60_000, 0)).await;
    assert!(never.dir.is_empty());
    let Outcome::Done(Reply::Running { takes, .. }) = run(&h, CommandBody::RunningTakes).await
    else {
        panic!("RunningTakes failed");
    };
    let names: Vec<(&str, bool)> = takes
        .iter()
        .map(|t| (t.take.take_id.as_str(), t.take.dir.is_empty()))
        .collect();
    assert!(
        names.contains(&("later", true)) || names.contains(&("later", false)),
        "{names:?}"
    );
    assert!(names.contains(&("never", true)), "{names:?}");
    match run(
        &h,
        CommandBody::StopTake {
            take_id: "never".into(),
        },
    )
    .await
    {
        Outcome::Failed(f) => assert!(f.message.contains("cancelled"), "{}", f.message),
        other => panic!("{other:?}"),
    }
    assert_eq!(ended(&h, "later").await, ("complete".into(), 96_000));
    let m = stopped(&h, "earlier").await;
    let d = drops(&feeder);
    check_content(Path::new(&earlier.dir), &m, &d);
    let Outcome::Done(Reply::Running { takes, .. }) = run(&h, CommandBody::RunningTakes).await
    else {
        panic!("RunningTakes failed");
    };
    assert!(takes.is_empty(), "{takes:?}");
    let later_dir =
        rakkr_e2e::takecheck::manifest(Path::new(&tmp.path().join("state/recordings/later")));
    assert_eq!(later_dir["endedBy"], "duration");
    assert_eq!(
        check_content(&tmp.path().join("state/recordings/later"), &later_dir, &d),
        96_000
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_take_survives_a_restart_and_keeps_its_times() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        mut agent,
        env,
        ..
    } = recording_node(tmp.path(), &[]).await;
    let h = ctl.handle();
    let now = now_ms();
    // 3 s on channels 7-8, starting well after the restart below.
    let (start, end) = (now + 12_000, now + 15_000);
    let info = started(&h, at("after", &[7, 8], 0, "job-s", start, end)).await;
    assert!(info.dir.is_empty(), "scheduled: {info:?}");
    let kept = tmp.path().join("state/scheduled-takes.json");
    assert!(kept.exists(), "kept on disk");
    // A restart: the agent stops and starts again before the take's start.
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    let _agent =
        crate::takes::spawn_connected(&rakkr_e2e::agent_bin(), &mut h.subscribe(), &env).await;
    if now_ms() + 500 < start {
        let Outcome::Done(Reply::Running { takes, .. }) = run(&h, CommandBody::RunningTakes).await
        else {
            panic!("RunningTakes failed");
        };
        let t = takes
            .iter()
            .find(|t| t.take.take_id == "after")
            .unwrap_or_else(|| panic!("forgotten: {takes:?}"));
        assert!(t.take.dir.is_empty(), "waits again: {t:?}");
        assert_eq!(
            (t.device_channels.as_slice(), t.job_id.as_str()),
            (&[7, 8][..], "job-s")
        );
    }
    let (status, frames) = ended(&h, "after").await;
    assert_eq!(status, "complete");
    // Its span, to within 50 ms of where the times fall in the stream.
    assert!(frames.abs_diff(144_000) <= 2_400, "{frames} frames");
    let dir = tmp.path().join("state/recordings/after");
    let m = manifest(&dir);
    assert_eq!(
        (m["endedBy"].as_str(), m["jobId"].as_str()),
        (Some("duration"), Some("job-s"))
    );
    check_content(&dir, &m, &drops(&feeder));
    assert!(!kept.exists(), "nothing waits: the file is gone");
    ctl.shutdown().await;
}
