//! Health signals end to end: the real agent daemon records from the paced
//! console playing known scenes (tones, a clipping channel, silence, a low
//! signal, a duplicated and an inverted pair), and each level signal is
//! raised and cleared through the controller, with its hysteresis visible;
//! a controller clock 7 s ahead raises the clock skew (and a take's
//! manifest records it) until it comes back; a controller speaking
//! protocol 1 gets a stand-in, never an event it cannot decode.

use std::collections::HashMap;
use std::time::Duration;

use rakkr_controller::ControllerHandle;
use rakkr_controller::sim::scenes::{Scene, Scenes};
use rakkr_e2e::alsa::PacedFeeder;
use rakkr_protocol::{
    CommandBody, EventBody, HealthEvent, HealthSignal, Severity, StartTake, TakeFormat,
    VersionRange,
};

use crate::takes::{
    Console, Rig, audio_taken, logged, recording_node_with, started, stopped, wait_logged,
};

/// Long enough for any edge: 3 observations of a second each, on a busy
/// machine, plus the link.
const EDGE: Duration = Duration::from_secs(60);

fn edges(log: &[EventBody]) -> Vec<HealthEvent> {
    log.iter()
        .filter_map(|b| match b {
            EventBody::Health(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

const LEVELS: [HealthSignal; 4] = [
    HealthSignal::Clipping,
    HealthSignal::Flatline,
    HealthSignal::LowSignal,
    HealthSignal::ChannelCorrelation,
];

/// Waits for the next edge (`raised` or cleared) of `signal` after the
/// `seen` the controller holds already.
async fn next_edge(h: &ControllerHandle, signal: HealthSignal, raised: bool) -> HealthEvent {
    let count = |log: &[EventBody]| {
        edges(log)
            .into_iter()
            .filter(|e| e.signal == signal && e.raised == raised)
            .count()
    };
    let seen = count(&logged(h));
    wait_logged(
        h,
        EDGE,
        || format!("no {signal:?} edge (raised: {raised}) within {EDGE:?}"),
        |log| {
            edges(log)
                .into_iter()
                .filter(|e| e.signal == signal && e.raised == raised)
                .nth(seen)
        },
    )
    .await
}

/// The agent's `status --json`.
fn status(env: &HashMap<String, String>) -> serde_json::Value {
    let out = rakkr_e2e::agent::run_agent(&["status", "--json"], env);
    assert!(out.status.success(), "status: {out:?}");
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// The device frame a scene scheduled now starts at: after what the
/// console has already queued for the agent.
fn soon(feeder: &PacedFeeder) -> u64 {
    feeder.fed() + 8 * 512
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_signal_is_raised_and_cleared_from_a_known_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let scenes = Scenes::default();
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        env,
        ..
    } = recording_node_with(tmp.path(), &[], Console::Scenes(scenes.clone()), |_| {}).await;
    let feeder = feeder.expect("the paced console");
    let h = ctl.handle();
    audio_taken(&h, 30).await;

    // Hysteresis: half a second of clipping spans at most two one-second
    // observations, fewer than the three that raise a signal.
    let at = soon(&feeder);
    scenes.at(at, Scene::Clip(3));
    scenes.at(at + 24_000, Scene::Healthy);
    // 5 s of audio taken after the burst was scheduled (meter frames are
    // a lower bound: one per 0.1 s of audio, some coalesced).
    audio_taken(&h, 50).await;

    let cases = [
        (Scene::Clip(3), HealthSignal::Clipping, vec![3]),
        (Scene::Silence, HealthSignal::Flatline, vec![]),
        (Scene::Low, HealthSignal::LowSignal, vec![]),
        (
            Scene::Duplicate(5),
            HealthSignal::ChannelCorrelation,
            vec![5],
        ),
        (Scene::Invert(7), HealthSignal::ChannelCorrelation, vec![7]),
    ];
    for (scene, signal, channels) in &cases {
        scenes.at(soon(&feeder), *scene);
        let up = next_edge(&h, *signal, true).await;
        assert_eq!(&up.channels, channels, "{scene:?}: {up:?}");
        assert_eq!(up.severity, Severity::Warning);
        assert_eq!(up.observations, 3, "raised after 3 observations: {up:?}");
        assert_eq!(up.interface_id, "alsa_pcm_x32file", "the inventory's id");
        match scene {
            Scene::Clip(_) => assert!(up.value >= -1.0, "peak {}", up.value),
            Scene::Silence => assert!(up.value <= -120.0, "RMS {}", up.value),
            Scene::Low => assert!((-80.0..=-55.0).contains(&up.value), "RMS {}", up.value),
            _ => assert!(up.value >= 0.98, "|r| {}", up.value),
        }
        if *scene == Scene::Clip(3) {
            let s = status(&env);
            let clip = s["health"]["signals"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["signal"] == "clipping")
                .cloned()
                .unwrap_or_default();
            assert_eq!(clip["severity"], "warning", "status shows it: {s}");
            assert_eq!(clip["controllerType"], "agent.meter.clipping");
            assert_eq!(clip["channels"], serde_json::json!([3]));
        }
        scenes.at(soon(&feeder), Scene::Healthy);
        let down = next_edge(&h, *signal, false).await;
        assert_eq!(down.severity, Severity::Info);
        assert_eq!(
            down.observations, 3,
            "cleared after 3 observations: {down:?}"
        );
    }

    // Exactly these level edges, in this order: the burst raised nothing,
    // silence was no "low signal" and a quiet room no pair.
    let log = logged(&h);
    let got: Vec<(HealthSignal, bool)> = edges(&log)
        .into_iter()
        .filter(|e| LEVELS.contains(&e.signal))
        .map(|e| (e.signal, e.raised))
        .collect();
    let want: Vec<(HealthSignal, bool)> = cases
        .iter()
        .flat_map(|(_, s, _)| [(*s, true), (*s, false)])
        .collect();
    assert_eq!(got, want);
    drop(feeder);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_clock_7_s_ahead_raises_skew_until_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        env,
        ..
    } = recording_node_with(tmp.path(), &[], Console::Counter, |_| {}).await;
    let h = ctl.handle();
    h.set_clock_offset_ms(7_000);
    let up = next_edge(&h, HealthSignal::ClockSkew, true).await;
    assert!((6.5..=7.5).contains(&up.value), "skew {} s", up.value);
    assert_eq!(up.threshold, 5.0);
    assert_eq!(up.observations, 3);
    let s = status(&env);
    let offset = s["health"]["clock"]["offsetMs"].as_i64().expect("measured");
    assert!((6_500..=7_500).contains(&offset), "{s}");
    assert!(
        s["health"]["clockSync"]["synchronized"].is_boolean()
            || s["health"]["clockSync"]["error"].is_string(),
        "{s}"
    );

    // A take started now records the skew it started with.
    started(
        &h,
        CommandBody::StartTake(StartTake {
            take_id: "skewed".into(),
            channels: 2,
            format: Some(TakeFormat::Flac),
            segment_seconds: 0,
            pre_roll_ms: 0,
        }),
    )
    .await;
    let m = stopped(&h, "skewed").await;
    let clock = &m["clock"];
    let skew = clock["skewMs"].as_i64().expect("skewMs");
    assert!((6_500..=7_500).contains(&skew), "{m}");
    let start = clock["startedAtMs"].as_u64().expect("startedAtMs");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(start <= now && now - start < 600_000, "{m}");
    assert!(clock.get("synchronized").is_some(), "{m}");

    h.set_clock_offset_ms(0);
    let down = next_edge(&h, HealthSignal::ClockSkew, false).await;
    assert!(down.value <= 2.0, "{down:?}");
    drop(feeder);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_1_controller_gets_a_stand_in_and_no_clock_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let scenes = Scenes::default();
    scenes.at(0, Scene::Silence);
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        env,
        ..
    } = recording_node_with(tmp.path(), &[], Console::Scenes(scenes), |c| {
        c.versions = VersionRange { min: 1, max: 1 }
    })
    .await;
    let h = ctl.handle();
    // The node knows (other signals may be raised too on a busy machine:
    // CPU pressure, xruns; each goes the same way).
    let flat = |s: &serde_json::Value| {
        s["health"]["signals"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["signal"] == "flatline" && x["severity"] == "warning")
    };
    let deadline = std::time::Instant::now() + EDGE;
    let s = loop {
        let s = status(&env);
        if flat(&s) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flatline not raised: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        s["health"]["clock"].is_null(),
        "no probe on protocol 1: {s}"
    );
    let reason = wait_logged(
        &h,
        EDGE,
        || "no stand-in for the flatline's Health event".into(),
        |log| {
            log.iter().find_map(|b| match b {
                EventBody::EventDropped { kind, reason, .. } if kind == "Health" => {
                    Some(reason.clone())
                }
                _ => None,
            })
        },
    )
    .await;
    assert!(reason.contains("protocol 1"), "{reason}");
    let log = logged(&h);
    assert!(
        edges(&log).is_empty(),
        "a protocol-1 controller got Health events"
    );
    drop(feeder);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_raises_device_unavailable_until_it_is_back() {
    if !rakkr_e2e::requires(
        "jackd (the real-time test device; apt-get install jackd2)",
        rakkr_e2e::have("jackd"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let crate::takes::Rig {
        ctl,
        jack,
        agent: _agent,
        ..
    } = crate::takes::recording_node_on(tmp.path(), &[], true).await;
    let mut jack = jack.expect("the JACK device");
    let h = ctl.handle();
    audio_taken(&h, 10).await;
    jack.crash_server();
    let up = next_edge(&h, HealthSignal::DeviceUnavailable, true).await;
    assert_eq!(up.severity, Severity::Critical);
    assert_eq!(up.interface_id, "alsa_pcm_x32jack", "{up:?}");
    assert_eq!(up.observations, 3);
    jack.restart_server();
    let down = next_edge(&h, HealthSignal::DeviceUnavailable, false).await;
    assert_eq!(
        HealthSignal::DeviceUnavailable.controller_type(down.raised),
        "agent.meter.capture_recovered"
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_recordings_disk_raises_disk_pressure_by_level() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = crate::diskfull::Tmpfs::mount(&rec, "32m");
    let rec_path = rec.display().to_string();
    let Rig {
        feeder,
        ctl,
        agent: _agent,
        ..
    } = recording_node_with(
        tmp.path(),
        &[
            ("RAKKR_STORAGE_RECORDINGS_PATH", rec_path.as_str()),
            ("RAKKR_STORAGE_MIN_FREE_MB", "2"),
            ("RAKKR_STORAGE_WARN_FREE_MB", "2"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "1"),
            ("RAKKR_HEALTH_DISK_WARNING_PERCENT", "40"),
            ("RAKKR_HEALTH_DISK_CRITICAL_PERCENT", "75"),
        ],
        Console::Counter,
        |_| {},
    )
    .await;
    let h = ctl.handle();
    let fill = |name: &str, mib: usize| {
        std::fs::write(rec.join(name), vec![1u8; mib << 20]).unwrap();
    };
    fill("a", 16);
    let up = next_edge(&h, HealthSignal::DiskPressure, true).await;
    assert_eq!(up.severity, Severity::Warning, "{up:?}");
    assert!((40.0..75.0).contains(&up.value), "{up:?}");
    fill("b", 10);
    let up = next_edge(&h, HealthSignal::DiskPressure, true).await;
    assert_eq!(
        up.severity,
        Severity::Critical,
        "raised again, higher: {up:?}"
    );
    assert!(up.value >= 75.0, "{up:?}");
    std::fs::remove_file(rec.join("a")).unwrap();
    std::fs::remove_file(rec.join("b")).unwrap();
    let down = next_edge(&h, HealthSignal::DiskPressure, false).await;
    assert!(down.value < 40.0, "{down:?}");
    drop(feeder);
    ctl.shutdown().await;
}
