//! Live listen from the recording's own capture: the controller asks for
//! a mono mix (48 kHz) or one channel (16 kHz) while a take records; the
//! frames carry exactly the mix of the console's known signal, the take
//! stays bit-exact, and the stream stops when asked and when the link
//! drops.

use rakkr_controller::{ControllerEvent, ControllerHandle};
use rakkr_e2e::alsa::x32_sample;
use rakkr_e2e::wait_for;
use rakkr_protocol::{
    CommandBody, ListenFrame, ListenRequest, Outcome, Reply, StartTake, TakeFormat,
};

use crate::T;
use crate::takes::{
    Console, NODE, Rig, audio_taken, drops, recording_node, recording_node_with, run, started,
    stopped,
};
use rakkr_controller::sim::scenes::{Scene, Scenes};

/// Prints the agent's log when the test fails.
struct LogOnPanic(rakkr_e2e::agent::AgentProcess);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the agent's log:\n{}", self.0.log().join("\n"));
        }
    }
}

/// A recording node; the agent's log is printed if the test fails.
async fn node(
    tmp: &std::path::Path,
) -> (
    Option<rakkr_e2e::alsa::PacedFeeder>,
    rakkr_controller::Controller,
    LogOnPanic,
) {
    let Rig {
        feeder, ctl, agent, ..
    } = recording_node(tmp, &[]).await;
    (feeder, ctl, LogOnPanic(agent))
}

fn samples(f: &ListenFrame) -> Vec<i16> {
    f.pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A console's known signal: channel (0-based), device frame → S32; it
/// repeats every `period` frames.
struct Signal {
    at: fn(usize, u64) -> i32,
    period: u64,
}

/// The counter console (`x32_sample`).
const COUNTER: Signal = Signal {
    at: x32_sample,
    period: 1 << 18,
};

fn healthy_tone(c: usize, n: u64) -> i32 {
    rakkr_controller::sim::scenes::sample_s32(Scene::Healthy, c, n)
}

/// The scenes console playing its healthy tones (whole cycles a second).
const TONES: Signal = Signal {
    at: healthy_tone,
    period: 48_000,
};

/// The agent's mono mix of 0-based channels `chs` at device frame `n`:
/// their mean, truncating, in i32.
fn mix(sig: &Signal, chs: &[usize], n: u64) -> i64 {
    chs.iter().map(|c| i64::from((sig.at)(*c, n))).sum::<i64>() / chs.len() as i64
}

/// Sample `i` of a stream decimated by `d` whose first sample starts at
/// device frame `n0`.
fn expected(sig: &Signal, chs: &[usize], d: u64, n0: u64, i: usize) -> i16 {
    let n = n0 + d * i as u64;
    let sum: i64 = (0..d).map(|k| mix(sig, chs, n + k)).sum();
    ((sum / d as i64) >> 16) as i16
}

/// The device frame (mod the signal's period) of the frame's first
/// sample, if the frame is exactly the mix at some position.
fn align(sig: &Signal, chs: &[usize], d: u64, got: &[i16], hint: Option<u64>) -> Option<u64> {
    let fits = |n0: u64| {
        got.iter()
            .enumerate()
            .all(|(i, s)| expected(sig, chs, d, n0, i) == *s)
    };
    if let Some(h) = hint.map(|h| h % sig.period)
        && fits(h)
    {
        return Some(h);
    }
    (0..sig.period).find(|n0| fits(*n0))
}

/// Collects `count` listen frames of the node.
async fn frames(h: &ControllerHandle, count: usize) -> Vec<(ListenFrame, u64)> {
    let mut events = h.subscribe();
    let mut out = Vec::new();
    while out.len() < count {
        let f = wait_for(&mut events, T, "a listen frame", |e| match e {
            ControllerEvent::Listen {
                frame,
                received_at_ms,
                ..
            } => Some((frame.clone(), *received_at_ms)),
            _ => None,
        })
        .await;
        out.push(f);
    }
    out
}

/// Checks that every frame is the mix of `chs` decimated by `d`; returns
/// how many frames continued the previous one exactly. A frame may differ
/// only where the console logged a drop inside it (`drops`, device frames).
fn check(
    sig: &Signal,
    chs: &[usize],
    d: u64,
    got: &[(ListenFrame, u64)],
    drops: &[std::ops::Range<u64>],
) -> usize {
    let mut next: Option<u64> = None;
    let mut continued = 0;
    for (f, _) in got {
        let s = samples(f);
        let span = d * s.len() as u64;
        match align(sig, chs, d, &s, next) {
            Some(n0) => {
                if Some(n0) == next {
                    continued += 1;
                }
                next = Some((n0 + span) % sig.period);
            }
            None => {
                let inside = |r: &std::ops::Range<u64>| match next {
                    Some(n) => (r.start % sig.period + sig.period - n) % sig.period < span,
                    None => true,
                };
                assert!(
                    drops.iter().any(inside),
                    "frame {} is not the mix of channels {chs:?} and the console dropped nothing in it: {:?}…",
                    f.seq,
                    &s[..8]
                );
                next = None;
            }
        }
    }
    continued
}

fn latency(got: &[(ListenFrame, u64)]) -> (u64, u64) {
    let mut l: Vec<u64> = got
        .iter()
        .map(|(f, at)| at.saturating_sub(f.captured_at_ms))
        .collect();
    l.sort_unstable();
    let p = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99))
}

async fn listen(
    h: &ControllerHandle,
    channels: Vec<u16>,
    rate: u32,
    frame_ms: u32,
) -> rakkr_protocol::Listening {
    match run(
        h,
        CommandBody::Listen(ListenRequest {
            channels,
            rate,
            frame_ms,
        }),
    )
    .await
    {
        Outcome::Done(Reply::Listening(l)) => l,
        other => panic!("listen refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_the_mix_while_the_take_stays_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (feeder, ctl, _log) = node(tmp.path()).await;
    let h = ctl.handle();
    let take = started(
        &h,
        CommandBody::StartTake(StartTake {
            take_id: "heard".into(),
            channels: 8,
            format: Some(TakeFormat::Flac),
            segment_seconds: 2,
            pre_roll_ms: 0,
        }),
    )
    .await;

    // A mono mix of channels 1 and 2 at the capture rate, 50 ms frames.
    let l = listen(&h, vec![1, 2], 48_000, 50).await;
    assert_eq!(
        (l.rate, l.frame_samples, l.lease_ms),
        (48_000, 2_400, 30_000)
    );
    let got = frames(&h, 30).await;
    assert!(
        got.iter()
            .all(|(f, _)| f.rate == 48_000 && f.pcm.len() == 4_800)
    );
    let env = std::collections::HashMap::from([(
        "RAKKR_STATE_DIR".to_owned(),
        tmp.path().join("state").display().to_string(),
    )]);
    let out = rakkr_e2e::agent::run_agent(&["status", "--json"], &env);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(s["listen"]["rate"], 48_000, "status shows the stream: {s}");
    assert_eq!(s["listen"]["channels"], serde_json::json!([1, 2]));
    // NOTE: with the counter a mean of two channels is a third channel
    // half a period later: this shows whole, continuous frames; the exact
    // mix is checked with tones below.
    let continued = check(&COUNTER, &[0, 1], 1, &got, &drops(&feeder));
    let (p50, p99) = latency(&got);
    eprintln!(
        "48 kHz mix: {continued} of {} frames continue the one before; capture to controller p50 {p50} ms, p99 {p99} ms",
        got.len()
    );

    // Renewed as one channel at 16 kHz: the same stream, changed.
    let l = listen(&h, vec![3], 16_000, 100).await;
    assert_eq!((l.rate, l.frame_samples), (16_000, 1_600));
    let got: Vec<_> = frames(&h, 40)
        .await
        .into_iter()
        .filter(|(f, _)| f.rate == 16_000)
        .collect();
    assert!(got.len() >= 30, "{} frames at 16 kHz", got.len());
    let continued = check(&COUNTER, &[2], 3, &got, &drops(&feeder));
    let (p50, p99) = latency(&got);
    eprintln!(
        "16 kHz channel 3: {continued} of {} frames continue the one before; p50 {p50} ms, p99 {p99} ms",
        got.len()
    );

    // Stopped when asked.
    match run(&h, CommandBody::StopListen).await {
        Outcome::Done(Reply::ListenStopped { was_running: true }) => {}
        other => panic!("{other:?}"),
    }
    let m = stopped(&h, "heard").await;
    assert_eq!(m["status"], "complete");
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    let frames_checked =
        rakkr_e2e::takecheck::check_content(std::path::Path::new(&take.dir), &m, &drops(&feeder));
    assert_eq!(frames_checked, m["frames"].as_u64().unwrap());
    drop(feeder);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_with_the_link_and_bad_requests_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (feeder, ctl, _log) = node(tmp.path()).await;
    let h = ctl.handle();
    for (req, says) in [
        ((vec![1], 44_100, 50), "44100 Hz"),
        ((vec![33], 16_000, 50), "channel 33"),
        ((vec![1], 16_000, 500), "500 ms"),
    ] {
        let (channels, rate, frame_ms) = req;
        match run(
            &h,
            CommandBody::Listen(ListenRequest {
                channels,
                rate,
                frame_ms,
            }),
        )
        .await
        {
            Outcome::Failed(f) => assert!(f.message.contains(says), "{f:?}"),
            other => panic!("accepted: {other:?}"),
        }
    }
    listen(&h, vec![], 16_000, 20).await;
    frames(&h, 5).await;
    let mut events = h.subscribe();
    h.disconnect(NODE).await.unwrap();
    wait_for(&mut events, T, "reconnected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    // A second of audio after the new session: no listen frame in it.
    audio_taken(&h, 10).await;
    let mut after = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, ControllerEvent::Listen { .. }) {
            after += 1;
        }
    }
    assert_eq!(after, 0, "listen frames after the link dropped");
    match run(&h, CommandBody::StopListen).await {
        Outcome::Done(Reply::ListenStopped { was_running }) => {
            assert!(!was_running, "the stream ended with its link")
        }
        other => panic!("{other:?}"),
    }
    drop(feeder);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_exactly_the_mean_of_the_asked_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder, ctl, agent, ..
    } = recording_node_with(tmp.path(), &[], Console::Scenes(Scenes::default()), |_| {}).await;
    let _log = LogOnPanic(agent);
    let h = ctl.handle();
    // Two tones (200 and 310 Hz): their mean is neither of them.
    listen(&h, vec![1, 2], 48_000, 50).await;
    let got = frames(&h, 20).await;
    let continued = check(&TONES, &[0, 1], 1, &got, &drops(&feeder));
    assert!(
        align(&TONES, &[0], 1, &samples(&got[0].0), None).is_none(),
        "the check tells the mix from channel 1 alone"
    );
    eprintln!(
        "48 kHz mix of two tones: {continued} of {} frames continue the one before",
        got.len()
    );
    // One channel at 16 kHz: the mean of each three samples.
    listen(&h, vec![3], 16_000, 100).await;
    let got: Vec<_> = frames(&h, 25)
        .await
        .into_iter()
        .filter(|(f, _)| f.rate == 16_000)
        .collect();
    assert!(got.len() >= 15, "{} frames at 16 kHz", got.len());
    let continued = check(&TONES, &[2], 3, &got, &drops(&feeder));
    eprintln!(
        "16 kHz channel 3: {continued} of {} frames continue the one before",
        got.len()
    );
    drop(feeder);
    ctl.shutdown().await;
}
