//! A take a crash interrupted goes on by itself: the agent, killed mid-take
//! and started again, recovers the take and records a new one that
//! continues it, as soon as its device is open — no command needed.

use rakkr_e2e::takecheck::manifest;

use nix::sys::signal::Signal;
use rakkr_protocol::{CommandBody, EventBody, StartTake, TakeFormat};

use crate::takes::{
    Setup, audio_taken, drops, recording_setup, spawn_recording, started, stopped, wait_logged,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_a_kill_interrupted_goes_on_by_itself_in_a_new_take() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        feeder,
        ctl,
        mut events,
        env,
        ..
    } = recording_setup(tmp.path(), &[], false).await;
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    started(
        &h,
        CommandBody::StartTake(StartTake {
            take_id: "show".into(),
            channels: 8,
            format: Some(TakeFormat::Flac),
            segment_seconds: 2,
            pre_roll_ms: 0,
        }),
    )
    .await;
    audio_taken(&h, 25).await;
    agent.signal(Signal::SIGKILL);
    let _ = agent.terminate(crate::T);
    let _agent = rakkr_e2e::agent::AgentProcess::spawn(&env);
    // No command: the new agent starts the continuing take by itself.
    let info = wait_logged(
        &h,
        2 * crate::T,
        || "the interrupted take did not go on".into(),
        |log| {
            log.iter().find_map(|b| match b {
                EventBody::TakeStarted(t) if t.take_id == "show-r2" => Some(t.clone()),
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(info.channels, 8, "the channels it had");
    assert_eq!(info.format, TakeFormat::Flac);
    audio_taken(&h, 25).await;
    let m2 = stopped(&h, "show-r2").await;
    let recordings = tmp.path().join("state/recordings");
    let (old, new) = (recordings.join("show"), recordings.join("show-r2"));
    let m1 = manifest(&old);
    assert_eq!(m1["status"], "recovered");
    assert_eq!(m2["status"], "complete");
    assert_eq!(m2["continues"], "show");
    assert_eq!(m2["segmentFrames"], 96_000, "the segment length it had");
    assert!(m2["segments"].as_u64().unwrap() >= 2, "{m2}");
    // Both hold the console's signal, but for what the device dropped
    // (while no agent read it, the paced console drops what is due).
    let drops = drops(&feeder);
    rakkr_e2e::takecheck::check_content(&old, &m1, &drops);
    rakkr_e2e::takecheck::check_content(&new, &m2, &drops);
    // What the kill cost: the signal between the last frame kept and the
    // first of the new take (the counter wraps every 2^18 frames, 5.4 s).
    let lost = rakkr_e2e::takecheck::signal_between((&old, &m1), (&new, &m2));
    eprintln!(
        "kill -9 to the continuing take: {lost} frames ({:.3} s) lost",
        lost as f64 / 48_000.0
    );
    drop(feeder);
    ctl.shutdown().await;
}
