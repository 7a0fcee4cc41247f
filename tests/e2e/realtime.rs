//! The real-time device (JACK dummy backend behind the ALSA `jack` PCM):
//! a stalled agent loses audio; the xrun is reported with the take position
//! and the number of frames lost, both checked against the recorded
//! content, and the gap is in the manifest.

use std::time::Duration;

use nix::sys::signal::Signal;
use rakkr_protocol::{CommandBody, EventBody, StartTake, TakeFormat};

use crate::T;
use crate::takes::{Rig, audio_taken, recording_node_on, started, stopped, wait_logged};

/// The one discontinuity of channel 1 in an interleaved W64 take of the
/// known signal: (take position, frames skipped).
fn discontinuity(path: &std::path::Path) -> Vec<(u64, u64)> {
    let (ch, samples) = rakkr_e2e::decode::interleaved_i32(path);
    let ch = usize::from(ch);
    let mut out = Vec::new();
    let counter = |s: i32| ((s >> 8) & 0x3ffff) as u64;
    for (i, w) in samples
        .chunks_exact(ch)
        .collect::<Vec<_>>()
        .windows(2)
        .enumerate()
    {
        let step = (counter(w[1][0]) + (1 << 18) - counter(w[0][0])) % (1 << 18);
        if step != 1 {
            out.push((i as u64 + 1, step - 1));
        }
    }
    out
}

/// One W64 file of every channel, no roll-over within the test.
fn w64(take_id: &str) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: take_id.into(),
        channels: 0,
        format: Some(TakeFormat::W64),
        segment_seconds: 600,
        pre_roll_ms: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_agent_reports_the_xrun_with_position_and_size() {
    if !rakkr_e2e::requires(
        "jackd (the real-time test device; apt-get install jackd2)",
        rakkr_e2e::have("jackd"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        ctl, agent, jack, ..
    } = recording_node_on(tmp.path(), &[], true).await;
    let h = ctl.handle();
    let take = started(&h, w64("stall")).await;
    audio_taken(&h, 16).await;
    // Freeze the whole agent (its JACK client included) for 300 ms.
    agent.signal(Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.signal(Signal::SIGCONT);
    audio_taken(&h, 16).await;
    let m = stopped(&h, "").await;
    let file = std::path::Path::new(&take.dir).join(m["files"][0]["file"].as_str().unwrap());
    // The stall is the largest hole; a loaded machine may add small ones
    // of its own (JACK's dummy backend missing or repeating a cycle; a
    // repeat shows as a backward step, near 2^18, and is not a loss).
    let truth: Vec<(u64, u64)> = discontinuity(&file)
        .into_iter()
        .filter(|h| h.1 < 1 << 17)
        .collect();
    let &(at, lost) = truth
        .iter()
        .max_by_key(|h| h.1)
        .expect("the stall left a hole in the audio");
    assert!(lost > 4_800, "the stall cost audio: {truth:?}");
    let gaps: Vec<(u64, u64)> = m["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["atSample"].as_u64().unwrap(),
                g["framesLost"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(m["xruns"].as_u64().unwrap() >= 1);
    assert!(
        gaps.len() <= truth.len(),
        "no phantom gaps: {gaps:?} vs {truth:?}"
    );
    // Position to a period, size to two periods (256 frames each).
    let matches = |g: &(u64, u64)| g.0.abs_diff(at) <= 256 && g.1.abs_diff(lost) <= 512;
    assert!(
        gaps.iter().any(matches),
        "manifest gaps {gaps:?}, audio jumps {truth:?}"
    );
    // And the controller got an event saying the same (events aggregate a
    // second of losses, so it holds at least this one).
    wait_logged(
        &h,
        T,
        || "no Xrun event for the stall".into(),
        |log| {
            log.iter()
                .any(|b| match b {
                    EventBody::Xrun {
                        take_id,
                        at_sample,
                        frames_lost,
                    } => {
                        take_id == "stall"
                            && at_sample.abs_diff(at) <= 256
                            && frames_lost + 512 >= lost
                    }
                    _ => false,
                })
                .then_some(())
        },
    )
    .await;
    drop(jack);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_that_comes_back_continues_the_take_in_a_new_segment() {
    if !rakkr_e2e::requires(
        "jackd (the real-time test device; apt-get install jackd2)",
        rakkr_e2e::have("jackd"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // NOTE: bind every part of the rig: a field left to `..` is dropped
    // (and the agent killed) at once.
    let Rig {
        ctl,
        jack,
        agent: _agent,
        ..
    } = recording_node_on(tmp.path(), &[], true).await;
    let mut jack = jack.expect("the JACK device");
    let h = ctl.handle();
    let take = started(&h, w64("lost")).await;
    audio_taken(&h, 16).await;
    jack.crash_server();
    tokio::time::sleep(Duration::from_secs(3)).await;
    jack.restart_server();
    // The agent notices it lost the device, then that it is back.
    let (lost_at, gap) = wait_logged(
        &h,
        T,
        || "no DeviceLost/DeviceBack pair".into(),
        |log| {
            let lost = log.iter().find_map(|b| match b {
                EventBody::DeviceLost {
                    take_id, at_sample, ..
                } if take_id == "lost" => Some(*at_sample),
                _ => None,
            });
            let back = log.iter().find_map(|b| match b {
                EventBody::DeviceBack {
                    take_id,
                    gap_frames,
                    ..
                } if take_id == "lost" => Some(*gap_frames),
                _ => None,
            });
            lost.zip(back)
        },
    )
    .await;
    audio_taken(&h, 16).await;
    let m = stopped(&h, "lost").await;
    assert_eq!(m["status"], "complete");
    let files = m["files"].as_array().unwrap();
    assert_eq!(
        m["segments"], 2,
        "a new segment after the device came back: {m}"
    );
    assert_eq!(
        files[1]["firstSample"].as_u64().unwrap(),
        lost_at,
        "the new segment starts where audio stopped"
    );
    let gaps = m["gaps"].as_array().unwrap();
    let g = gaps
        .iter()
        .find(|g| g["cause"] == "device lost")
        .expect("the gap is in the manifest");
    assert_eq!(g["atSample"].as_u64().unwrap(), lost_at);
    assert_eq!(g["framesLost"].as_u64().unwrap(), gap);
    assert!(
        gap >= 3 * 48_000,
        "the outage lasted over 3 s: {gap} frames"
    );
    // Each segment holds the signal without holes (the feeder restarted its
    // counter with the server, so segments are checked one by one) but
    // for what the device itself dropped: on a busy machine the JACK server
    // can miss a cycle (an xrun it reports, which the ALSA jack plugin
    // never tells its reader) or not run the feeder for one. Such a hole
    // is the device's; any hole beyond what it reported is the agent's.
    let device = jack.drops();
    let mut holes = Vec::new();
    for f in files {
        let path = std::path::Path::new(&take.dir).join(f["file"].as_str().unwrap());
        holes.extend(
            discontinuity(&path)
                .into_iter()
                .filter(|h| h.1 < 1 << 17)
                .map(|h| (f["file"].as_str().unwrap().to_owned(), h)),
        );
        assert!(f["samples"].as_u64().unwrap() > 24_000);
    }
    let excused = device.xruns + device.skipped.div_ceil(256);
    assert!(
        holes.len() as u64 <= excused,
        "holes the device did not report: {holes:?} (device: {device:?})"
    );
    drop(jack);
    ctl.shutdown().await;
}
