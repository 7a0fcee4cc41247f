//! Crash safety: `kill -9` of the agent in the middle of a real-time take
//! (the paced FIFO device), then `recover`. Closed segments must be intact
//! and bit-exact, the open one repaired, at most 1 s of the audio the
//! device delivered missing, and the manifest must say what happened.

use rakkr_e2e::takecheck::manifest;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rakkr_e2e::agent::{AgentProcess, run_agent};
use rakkr_e2e::alsa::{MAX_QUEUED, PacedFeeder, x32_config_for};
use rakkr_e2e::init_logging;

fn kill_mid_take_then_recover(format: &str) {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("x32.fifo");
    let feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(60));
    let out = tmp.path().join("takes");
    let env = HashMap::from([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            x32_config_for(tmp.path(), &fifo),
        ),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().join("state").display().to_string(),
        ),
        ("RAKKR_STORAGE_MIN_FREE_MB".to_owned(), "16".to_owned()),
        ("RAKKR_STORAGE_STOP_FREE_MB".to_owned(), "8".to_owned()),
        ("RAKKR_LOG".to_owned(), "info".to_owned()),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
    ]);
    let args = [
        "record",
        "--device",
        "x32file",
        "--format",
        format,
        "--segment",
        "2s",
        "--take-id",
        "crash",
        "--output",
        out.to_str().unwrap(),
    ];
    let mut agent = AgentProcess::spawn_args(&args, &env);
    // A closed segment and more than a sync interval of the second.
    agent.wait_log(&["segment closed", "segment=1"], 1, Duration::from_secs(30));
    // Wait for the state, not a time: segment 2 holds synced audio.
    rakkr_e2e::wait_until(Duration::from_secs(30), "a sync in segment 2", || {
        rakkr_e2e::segment_synced(&out.join("crash"), 2)
    });
    let fed_before = feeder.fed();
    agent.signal(Signal::SIGKILL);
    let fed_after = feeder.fed();
    assert!(agent.wait_exit(Duration::from_secs(5)).is_some());
    let drops = feeder.drops();
    drop(feeder);

    let take = out.join("crash");
    let before = manifest(&take);
    assert_eq!(
        before["status"], "recording",
        "a killed take is left as recording"
    );
    assert!(!before["openFiles"].as_array().unwrap().is_empty());

    let started = Instant::now();
    let rec = run_agent(&["recover", take.to_str().unwrap()], &env);
    let stdout = String::from_utf8_lossy(&rec.stdout);
    assert!(
        rec.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&rec.stderr)
    );
    assert!(stdout.contains("recovered take crash"), "{stdout}");
    tracing::info!(took = ?started.elapsed(), "recovered");

    let m = manifest(&take);
    assert_eq!(m["status"], "recovered");
    assert_eq!(m.get("openFiles"), None);
    let saved = m["recovery"]["framesSaved"].as_u64().unwrap();
    // Normally segment 2; a loaded machine can put the writer behind its
    // log and the kill into segment 3. Either way: the closed ones whole.
    let open = m["recovery"]["segment"].as_u64().unwrap();
    assert!(open >= 2, "killed after segment 1 closed, recovered {open}");
    assert!(saved > 0, "part of the open segment was saved");
    let content = rakkr_e2e::takecheck::check_content_detail(&take, &m, &drops.ranges());
    let frames = content.frames;
    assert_eq!(m["frames"].as_u64().unwrap(), frames);
    assert_eq!(
        frames,
        (open - 1) * 2 * 48_000 + saved,
        "the closed segments whole, then what was saved"
    );
    // What the device had delivered when the agent died, at least: all it
    // was fed except what still sat in the pipe (and what the take skipped
    // at its start, which `first` accounts for).
    let delivered = fed_before.saturating_sub(MAX_QUEUED * 512);
    // The signal's frame counter wraps at 2^18 (5.4 s): compare modulo.
    const WRAP: u64 = 1 << 18;
    let end = (started_offset(&take, &m) + frames + content.device_dropped) % WRAP;
    let diff = (delivered % WRAP + WRAP - end) % WRAP;
    // Past the half-way point the take is ahead: the pipe held less.
    let missing = if diff > WRAP / 2 { 0 } else { diff };
    tracing::info!(format, missing, saved, frames, "kill -9 cost");
    assert!(
        missing <= 48_000,
        "{missing} frames lost by kill -9 (fed {fed_before}..{fed_after}, recovered {frames})"
    );
    // A second recovery finds nothing to do.
    let again = run_agent(&["recover", take.to_str().unwrap()], &env);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"));
}

/// The device frame the take started at (frames fed before capture began).
fn started_offset(take: &Path, m: &serde_json::Value) -> u64 {
    let f = &m["files"][0];
    let (_, samples) = rakkr_e2e::decode::interleaved_i32(&take.join(f["file"].as_str().unwrap()));
    ((samples[0] >> 8) & 0x3ffff) as u64
}

#[test]
fn kill_9_mid_take_flac_recovers_with_at_most_one_second_lost() {
    kill_mid_take_then_recover("flac");
}

#[test]
fn kill_9_mid_take_wav_recovers_with_at_most_one_second_lost() {
    kill_mid_take_then_recover("wav");
}

#[test]
fn kill_9_mid_take_w64_recovers_with_at_most_one_second_lost() {
    kill_mid_take_then_recover("w64");
}

/// Audio captured before a stop belongs to the take even when the engine
/// runs behind the device: a test-fault build stops reading the ring from
/// a mark to the stop (as a writer starved on a busy machine does), so
/// the ring holds a second of audio when the stop comes. The take must
/// end where the device was when the stop was sent, not where the writer
/// was (stop 26's CI lost 0.3 s so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_keeps_the_audio_the_engine_had_not_written_yet() {
    use crate::takes::{Setup, recording_setup, run, start, started, stopped};
    use rakkr_protocol::{CommandBody, Outcome, Reply};
    // Built before the console starts: a slow build must not outlast it.
    let faults = rakkr_e2e::update::stamped(rakkr_e2e::update::NEW, true);
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        feeder,
        ctl,
        mut events,
        mut env,
        ..
    } = recording_setup(tmp.path(), &[], false).await;
    let feeder = feeder.expect("the FIFO console");
    env.insert("RAKKR_FAULT".into(), "stall-after-mark".into());
    let mut agent = crate::takes::spawn_connected(&faults, &mut events, &env).await;
    let h = ctl.handle();
    crate::takes::wait_device(&h, || agent.log().join("\n")).await;
    let take = started(&h, start("behind")).await;
    let marked = run(
        &h,
        CommandBody::Mark {
            label: "engine stalls".into(),
        },
    )
    .await;
    assert!(
        matches!(marked, Outcome::Done(Reply::Marked { .. })),
        "{marked:?}"
    );
    // A second of device time passes with the engine reading nothing (the
    // 4 s ring holds it).
    let from = feeder.fed();
    rakkr_e2e::wait_until(crate::T, "a second of audio fed", || {
        feeder.fed() >= from + 48_000
    });
    let sent_at = feeder.fed();
    let m = stopped(&h, "behind").await;
    assert_eq!(m["status"], "complete", "{m}");
    let dir = Path::new(&take.dir);
    crate::takes::assert_take_reaches(dir, &m, &feeder.drops().ranges(), sent_at);
    assert!(
        agent
            .terminate(Duration::from_secs(6))
            .is_some_and(|s| s.success())
    );
    ctl.shutdown().await;
}
