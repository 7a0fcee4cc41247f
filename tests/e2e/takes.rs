//! Takes driven by the reference controller: the real agent daemon records
//! from the paced 32-channel FIFO device; start, repeat, refuse, mark,
//! status and stop over the authenticated link; the controller crashes and
//! comes back in the middle of the take, which goes on regardless, and
//! every take event reaches it exactly once, in order.

use std::collections::HashMap;
use std::time::Duration;

use rakkr_controller::{Controller, ControllerConfig, ControllerEvent};
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};
use rakkr_e2e::pki::TestPki;
use rakkr_e2e::{init_logging, start_controller, wait_for};
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply, StartTake, TakeFormat};

use crate::T;

pub(crate) const NODE: &str = "node-take";

pub(crate) fn start(take_id: &str) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: take_id.into(),
        channels: 0,
        format: Some(TakeFormat::Flac),
        segment_seconds: 1,
        pre_roll_ms: 0,
    })
}

pub(crate) async fn run(h: &rakkr_controller::ControllerHandle, body: CommandBody) -> Outcome {
    h.command(NODE, body, T)
        .await
        .expect("command answered")
        .outcome
}

/// Runs a StartTake; panics unless the take started. Returns it.
pub(crate) async fn started(
    h: &rakkr_controller::ControllerHandle,
    body: CommandBody,
) -> rakkr_protocol::TakeInfo {
    match run(h, body).await {
        Outcome::Done(Reply::Take { take, .. }) => take,
        other => panic!("take did not start: {other:?}"),
    }
}

/// Stops take `take_id` (empty: the running one); panics unless it
/// stopped. Returns its final manifest.
pub(crate) async fn stopped(
    h: &rakkr_controller::ControllerHandle,
    take_id: &str,
) -> serde_json::Value {
    match run(
        h,
        CommandBody::StopTake {
            take_id: take_id.into(),
        },
    )
    .await
    {
        Outcome::Done(Reply::TakeStopped { manifest_json, .. }) => {
            serde_json::from_str(&manifest_json).expect("manifest JSON")
        }
        other => panic!("stop failed: {other:?}"),
    }
}

/// A controller and the real agent daemon recording from the paced
/// 32-channel FIFO device, connected and with its device open.
pub(crate) struct Rig {
    pub feeder: Option<PacedFeeder>,
    pub jack: Option<rakkr_e2e::jack::JackDevice>,
    pub pki: TestPki,
    pub store: std::path::PathBuf,
    pub ctl: Controller,
    pub agent: AgentProcess,
    /// The agent's environment (for its CLI: `status`, …).
    pub env: HashMap<String, String>,
}

/// What the paced device dropped so far (none for JACK or no device).
pub(crate) fn drops(feeder: &Option<PacedFeeder>) -> Vec<std::ops::Range<u64>> {
    feeder
        .as_ref()
        .map(|f| f.drops().ranges())
        .unwrap_or_default()
}

/// Checks the content of the take in `dir` (manifest `m`) and that it
/// holds the paced console's audio up to device frame `sent_at` (its
/// position when the stop was sent): a take ends at its stop, not where
/// a writer running behind was. Excused: what the capture could not have
/// read yet (the pipe's periods and the ALSA buffer), what the device
/// dropped (`drops`: a reader late on a busy machine) and the losses the
/// manifest's gaps report. Panics with the figures; returns what the
/// content check found.
pub(crate) fn assert_take_reaches(
    dir: &std::path::Path,
    m: &serde_json::Value,
    drops: &[std::ops::Range<u64>],
    sent_at: u64,
) -> rakkr_e2e::takecheck::Content {
    use rakkr_e2e::takecheck::{WRAP, check_content_detail, signal_at};
    let content = check_content_detail(dir, m, drops);
    assert_eq!(content.frames, m["frames"].as_u64().unwrap());
    // The take's end on the device's timeline: the signal counts frames
    // modulo 2^18 (5.4 s), and the take ends within a second or two of
    // `sent_at`.
    let last = signal_at(dir, m, true);
    let ahead = (last + WRAP - sent_at % WRAP) % WRAP;
    let end = if ahead < WRAP / 2 {
        sent_at + ahead + 1
    } else {
        sent_at + ahead + 1 - WRAP
    };
    let unread = (rakkr_e2e::alsa::MAX_QUEUED + 2) * 512;
    let dropped: u64 = drops
        .iter()
        .map(|r| r.end.min(sent_at).saturating_sub(r.start.max(end)))
        .sum();
    let gaps: u64 = m["gaps"]
        .as_array()
        .expect("manifest shape")
        .iter()
        .map(|g| g["framesLost"].as_u64().expect("manifest shape"))
        .sum();
    let short = sent_at.saturating_sub(end + unread + dropped + gaps);
    assert_eq!(
        short, 0,
        "the take ends at device frame {end}, the stop was sent at {sent_at}: {short} frames lost beyond {unread} unread, {dropped} dropped by the device and {gaps} in the manifest's gaps"
    );
    content
}

pub(crate) async fn recording_node(tmp: &std::path::Path, extra: &[(&str, &str)]) -> Rig {
    recording_node_on(tmp, extra, false).await
}

/// The same with the JACK device (`x32jack`, real time, can xrun) when
/// `jack` is set.
/// What a recording node needs before its agent starts: the device, a
/// controller (with a store) and the agent's environment.
pub(crate) struct Setup {
    pub feeder: Option<PacedFeeder>,
    pub jack: Option<rakkr_e2e::jack::JackDevice>,
    pub pki: TestPki,
    pub store: std::path::PathBuf,
    pub ctl: Controller,
    pub events: tokio::sync::broadcast::Receiver<ControllerEvent>,
    pub env: HashMap<String, String>,
}

pub(crate) async fn recording_node_on(
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
    jack: bool,
) -> Rig {
    recording_node_with(tmp, extra, Console::of(jack), |_| {}).await
}

/// A recording node on `console`, its controller adjusted by `configure`.
pub(crate) async fn recording_node_with(
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
    console: Console,
    configure: impl FnOnce(&mut ControllerConfig),
) -> Rig {
    let Setup {
        feeder,
        jack: jack_dev,
        pki,
        store,
        ctl,
        mut events,
        env,
    } = recording_setup_on(tmp, extra, console, configure).await;
    let agent = spawn_recording(&ctl, &mut events, &env).await;
    Rig {
        feeder,
        jack: jack_dev,
        pki,
        store,
        ctl,
        agent,
        env,
    }
}

/// Starts the agent of a [`Setup`] and waits until it is connected and its
/// capture device is open.
pub(crate) async fn spawn_recording(
    ctl: &Controller,
    events: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    env: &HashMap<String, String>,
) -> AgentProcess {
    let agent = spawn_connected(&rakkr_e2e::agent_bin(), events, env).await;
    wait_device(&ctl.handle(), || agent.log().join("\n")).await;
    agent
}

/// Starts `bin` (an agent build) with `env` and waits until it is
/// connected (`events`: subscribed before); its log if it does not.
pub(crate) async fn spawn_connected(
    bin: &std::path::Path,
    events: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    env: &HashMap<String, String>,
) -> AgentProcess {
    let agent = AgentProcess::spawn_bin(bin, &["run"], env);
    let connected = tokio::time::timeout(
        T,
        wait_for(events, 2 * T, "Connected", |e| {
            matches!(e, ControllerEvent::Connected { .. }).then_some(())
        }),
    )
    .await;
    assert!(
        connected.is_ok(),
        "the agent did not connect within {T:?}; its log:\n{}",
        agent.log().join("\n")
    );
    agent
}

/// The controller's stored event log of [`NODE`], oldest first.
pub(crate) fn logged(h: &rakkr_controller::ControllerHandle) -> Vec<EventBody> {
    h.event_log(NODE)
        .unwrap()
        .into_iter()
        .map(|e| e.event.body)
        .collect()
}

/// Polls the controller's stored event log of [`NODE`] (every 100 ms, up to
/// `within`) until `pred` finds what it wants; panics with `what()` else.
pub(crate) async fn wait_logged<T>(
    h: &rakkr_controller::ControllerHandle,
    within: Duration,
    what: impl Fn() -> String,
    mut pred: impl FnMut(&[EventBody]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let log = logged(h);
        if let Some(v) = pred(&log) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node's capture device is open (the engine opens it in the background).
pub(crate) async fn wait_device(h: &rakkr_controller::ControllerHandle, log: impl Fn() -> String) {
    for _ in 0..100 {
        if let Outcome::Done(Reply::TakeStatus {
            device_ok: true,
            take: None,
            ..
        }) = run(h, CommandBody::TakeStatus).await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the capture device did not open; log:\n{}", log());
}

pub(crate) async fn recording_setup(
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
    jack: bool,
) -> Setup {
    recording_setup_with(tmp, extra, jack, |_| {}).await
}

/// `recording_setup`, with the controller's configuration adjusted by
/// `configure` (after the store and heartbeat are set).
pub(crate) async fn recording_setup_with(
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
    jack: bool,
    configure: impl FnOnce(&mut ControllerConfig),
) -> Setup {
    recording_setup_on(tmp, extra, Console::of(jack), configure).await
}

/// Which simulated console a recording node records from.
pub(crate) enum Console {
    /// The paced FIFO device with the counter signal (`x32_sample`).
    Counter,
    /// The paced FIFO device playing the scenes the test schedules.
    Scenes(rakkr_controller::sim::scenes::Scenes),
    /// The JACK device (`x32jack`, real time, can xrun).
    Jack,
}

impl Console {
    /// The JACK device when `jack`, else the counter console.
    pub(crate) fn of(jack: bool) -> Self {
        if jack { Self::Jack } else { Self::Counter }
    }
}

pub(crate) async fn recording_setup_on(
    tmp: &std::path::Path,
    extra: &[(&str, &str)],
    console: Console,
    configure: impl FnOnce(&mut ControllerConfig),
) -> Setup {
    init_logging();
    let fifo = tmp.join("x32.fifo");
    let limit = Duration::from_secs(180);
    let (feeder, jack_dev) = match console {
        Console::Jack => (
            None,
            Some(rakkr_e2e::jack::JackDevice::start(std::path::Path::new(
                env!("CARGO_BIN_EXE_rakkr-jack-feeder"),
            ))),
        ),
        Console::Counter => (
            Some(PacedFeeder::start(&fifo, 32, 48_000, 512, limit)),
            None,
        ),
        Console::Scenes(s) => (
            Some(PacedFeeder::start_with(
                &fifo,
                32,
                48_000,
                512,
                limit,
                s.signal(32),
            )),
            None,
        ),
    };
    let pki = TestPki::new();
    let store = tmp.join("store");
    let ctl = start_controller(pki.server_config(), |c| {
        c.store = Some(store.clone());
        c.heartbeat = Duration::from_millis(500);
        configure(c);
    })
    .await;
    let state = tmp.join("state");
    pki.node_trust(&state, NODE, rakkr_devpki::Validity::days(30));
    let mut env: HashMap<String, String> = agent_env(&state, ctl.local_addr());
    match &jack_dev {
        Some(j) => env.extend(j.env(tmp).into_iter().chain([
            ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32jack".to_owned()),
            ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "256".to_owned()),
        ])),
        None => env.extend([
            ("ALSA_CONFIG_PATH".to_owned(), x32_config_for(tmp, &fifo)),
            ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32file".to_owned()),
            ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
        ]),
    }
    env.extend([
        ("RAKKR_STORAGE_MIN_FREE_MB".to_owned(), "16".to_owned()),
        ("RAKKR_STORAGE_STOP_FREE_MB".to_owned(), "8".to_owned()),
    ]);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let events = ctl.handle().subscribe();
    Setup {
        feeder,
        jack: jack_dev,
        pki,
        store,
        ctl,
        events,
        env,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_drives_a_take_that_survives_a_controller_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        pki,
        store,
        ctl,
        mut agent,
        ..
    } = recording_node(tmp.path(), &[]).await;
    let addr = ctl.local_addr();
    let h = ctl.handle();
    let Outcome::Done(Reply::Take {
        take,
        already_running: false,
    }) = run(&h, start("show-1")).await
    else {
        panic!("take did not start");
    };
    assert_eq!((take.channels, take.sample_rate), (32, 48_000));
    // Starting the same take again is a no-op returning it; another take is refused.
    assert!(matches!(
        run(&h, start("show-1")).await,
        Outcome::Done(Reply::Take {
            already_running: true,
            ..
        })
    ));
    match run(&h, start("show-2")).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::Busy);
            assert!(f.message.contains("show-1"), "{}", f.message);
        }
        other => panic!("a second take was not refused: {other:?}"),
    }
    let Outcome::Done(Reply::Marked { at_sample }) = run(
        &h,
        CommandBody::Mark {
            label: "doors".into(),
        },
    )
    .await
    else {
        panic!("mark failed");
    };

    // The controller crashes for 2.5 s; the take does not notice.
    ctl.shutdown().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut cfg = ControllerConfig::new(addr, pki.server_config());
    cfg.store = Some(store.clone());
    cfg.heartbeat = Duration::from_millis(500);
    let ctl = Controller::start(cfg)
        .await
        .expect("controller restarts on the same port");
    let mut events = ctl.handle().subscribe();
    wait_for(&mut events, T, "Connected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    let h = ctl.handle();
    let Outcome::Done(Reply::TakeStatus {
        take: Some(running),
        ..
    }) = run(&h, CommandBody::TakeStatus).await
    else {
        panic!("the take is not running after the controller came back");
    };
    assert!(running.frames > at_sample, "{} frames", running.frames);
    let sent_at = feeder.as_ref().expect("the FIFO console").fed();
    let m = stopped(&h, "show-1").await;
    assert_eq!(m["status"], "complete");
    assert_eq!(m["markers"][0]["label"], "doors");
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    // The take ran through the outage up to the stop: it ends where the
    // device was when the stop was sent.
    let content = assert_take_reaches(
        std::path::Path::new(&take.dir),
        &m,
        &drops(&feeder),
        sent_at,
    );
    let frames = content.frames;
    // What the device itself dropped (a late reader on a busy machine)
    // counts as time the take ran.
    assert!(
        frames + content.device_dropped >= 120_000,
        "the take ran through the 2.5 s outage: {frames} frames, {} dropped by the device",
        content.device_dropped
    );
    let segments = m["segments"].as_u64().unwrap();

    // Every take event once, in order: started, one per segment, stopped.
    let deadline = tokio::time::Instant::now() + T;
    let takes = loop {
        let log = h.event_log(NODE).unwrap();
        let takes: Vec<EventBody> = log
            .into_iter()
            .map(|e| e.event.body)
            .filter(|b| {
                matches!(
                    b,
                    EventBody::TakeStarted(_)
                        | EventBody::SegmentClosed { .. }
                        | EventBody::TakeStopped { .. }
                )
            })
            .collect();
        if takes
            .iter()
            .any(|b| matches!(b, EventBody::TakeStopped { .. }))
            || tokio::time::Instant::now() > deadline
        {
            break takes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(matches!(&takes[0], EventBody::TakeStarted(t) if t.take_id == "show-1"));
    let closed: Vec<u32> = takes
        .iter()
        .filter_map(|b| match b {
            EventBody::SegmentClosed { segment, files, .. } => {
                assert_eq!(files.len(), 32);
                Some(*segment)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        (1..=segments as u32).collect::<Vec<_>>(),
        "each segment once, in order"
    );
    assert!(
        matches!(takes.last(), Some(EventBody::TakeStopped { status, frames: f, .. }) if status == "complete" && *f == frames)
    );
    assert_eq!(takes.len(), segments as usize + 2);
    assert!(
        agent
            .terminate(Duration::from_secs(6))
            .is_some_and(|s| s.success())
    );
    ctl.shutdown().await;
}

/// Checks a meter frame of the known signal: channel c peaks near
/// (c << 18 | 0x3ffff) << 8, so levels rise with the channel number, the
/// first sits near -30 dBFS and the last near full scale.
fn check_levels(levels: &[(u16, f32, bool)]) {
    assert_eq!(levels.len(), 32);
    assert!(levels.iter().enumerate().all(|(i, l)| l.0 == i as u16 + 1));
    assert!(levels[0].1 < -29.0, "channel 1 peak {}", levels[0].1);
    assert!(levels[31].1 > -0.5, "channel 32 {:?}", levels[31]);
    assert!(
        levels.windows(2).skip(1).all(|w| w[1].1 > w[0].1),
        "{levels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_reach_the_controller_and_the_local_meter_cli_between_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder: _feeder,
        ctl,
        mut agent,
        ..
    } = recording_node(tmp.path(), &[]).await;
    // The controller gets meter frames although no take records.
    let mut events = ctl.handle().subscribe();
    let frame = wait_for(&mut events, T, "Meter", |e| match e {
        ControllerEvent::Meter { frame, .. } => Some(frame.clone()),
        _ => None,
    })
    .await;
    // The inventory's interface id, so the controller can join the frame
    // to the interface and its channel names.
    assert_eq!(frame.interface_id, "alsa_pcm_x32file");
    check_levels(
        &frame
            .levels
            .iter()
            .map(|l| (l.channel_index, l.peak_dbfs, l.clipping))
            .collect::<Vec<_>>(),
    );
    // The engineer at the node: `meter --once --json`, and the bars.
    let env = HashMap::from([(
        "RAKKR_STATE_DIR".to_owned(),
        tmp.path().join("state").display().to_string(),
    )]);
    let out = rakkr_e2e::agent::run_agent(&["meter", "--once", "--json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly the controller's meter frame shape.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Err(errors) = rakkr_e2e::shape::validate_meter_frame(&v) {
        panic!("meter --json is not the controller's shape: {errors:#?}\n{v}");
    }
    assert_eq!(v["interfaceId"], "alsa_pcm_x32file");
    assert_eq!(v["nodeId"], NODE);
    assert_eq!(v["levels"][0]["label"], "Input 1");
    let levels: Vec<(u16, f32, bool)> = v["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["channelIndex"].as_u64().unwrap() as u16,
                l["peakDbfs"].as_f64().unwrap() as f32,
                l["clipping"].as_bool().unwrap(),
            )
        })
        .collect();
    check_levels(&levels);
    let out = rakkr_e2e::agent::run_agent(&["meter", "--once"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 32, "{text}");
    assert!(
        text.lines().next().unwrap().starts_with(" 1 Input 1"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("32 Input 32"),
        "{text}"
    );
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}

/// Returns once the agent's engine has taken at least `tenths - 1` tenths
/// of a second of audio from the device after the call: a meter frame
/// goes out for every 4,800 frames it takes (10 Hz of audio). Frames the
/// link coalesces only make this wait longer. Waits for audio, not time.
pub async fn audio_taken(h: &rakkr_controller::ControllerHandle, tenths: usize) {
    let mut events = h.subscribe();
    for n in 0..tenths {
        wait_for(
            &mut events,
            Duration::from_secs(60),
            &format!("meter frame {n}"),
            |e| matches!(e, ControllerEvent::Meter { .. }).then_some(()),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_roll_starts_the_take_before_the_command_without_a_seam() {
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        ctl,
        mut agent,
        ..
    } = recording_node(tmp.path(), &[("RAKKR_CAPTURE_PRE_ROLL_SECONDS", "2")]).await;
    let h = ctl.handle();
    // Let the pre-roll buffer fill: a meter frame goes out for every
    // 4,800 frames the engine took from the device (10 Hz of audio), so
    // 12 of them, all counted after this point, prove 52,800 frames in
    // the pre-roll buffer (it holds 2 s), whatever the machine's load.
    audio_taken(&h, 12).await;
    let take = started(
        &h,
        CommandBody::StartTake(StartTake {
            take_id: "early".into(),
            channels: 4,
            format: Some(TakeFormat::Flac),
            segment_seconds: 0,
            pre_roll_ms: 1000,
        }),
    )
    .await;
    assert_eq!(
        take.pre_roll_frames, 48_000,
        "one second from before the command"
    );
    assert_eq!(take.channels, 4);
    // At least 0.7 s of live audio after the command (as above).
    audio_taken(&h, 8).await;
    let m = stopped(&h, "early").await;
    assert_eq!(
        m["files"].as_array().unwrap().len(),
        4,
        "the first 4 channels"
    );
    // Pre-roll and live audio join without a seam: the signal is continuous.
    let frames =
        rakkr_e2e::takecheck::check_content(std::path::Path::new(&take.dir), &m, &drops(&feeder));
    assert!(frames > 48_000 + 24_000, "{frames}");
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}
