//! Soak: a live 32-channel take with 10 s segments for `BENCH_SOAK_MINUTES`
//! (default 30), streaming to the reference controller while faults are
//! injected: the controller killed every ~20 s (restarted on its port and
//! store), the link cut at random through a proxy every 2-8 s, the agent
//! `kill -9`ed 5 times (it recovers its take and records the next). At
//! the end every file of every take is on the controller, byte for byte
//! the node's (its SHA-256 is the node manifest's), and a table lists the
//! faults and the audio each cost: what a killed agent had captured but
//! recovery could not keep (goal <= 1 s per kill) and the gaps the
//! manifests record. Every copy is then decoded and checked against the
//! console's signal: each jump in it must be a drop the device reported
//! or a gap the manifest records; audio lost silently fails the soak.
//!
//! The device is the JACK test console (a jackd dummy server and a
//! feeder, `tests/src/jack.rs`), lost twice for 3 s (its server crashes,
//! then comes back): the take goes on in a new segment and its manifest
//! records the gap. Without jackd it falls back to the paced FIFO console
//! and skips the device losses, saying so: that console cannot be
//! unplugged faithfully (when its feed stops, alsa-lib's file plugin reads
//! EOF and the agent sees a device delivering faster than real time).
//!
//! Not part of `.ci/run`:
//! `BENCH_SOAK_MINUTES=30 cargo bench -p rakkr-e2e --bench soak`
//! (`BENCH_SOAK_KEEP=1` keeps its directory, and says where).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rakkr_controller::{Controller, ControllerConfig, ControllerHandle};
use rakkr_devpki::Validity;
use rakkr_e2e::TestPki;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};
use rakkr_protocol::{CommandBody, Outcome, Reply, StartTake, TakeFormat};

const NODE: &str = "soak-node";

async fn command(h: &ControllerHandle, body: CommandBody) -> Option<Reply> {
    attempt(h, body).await.ok()
}

async fn attempt(h: &ControllerHandle, body: CommandBody) -> Result<Reply, String> {
    match h.command(NODE, body, Duration::from_secs(10)).await {
        Ok(r) => match r.outcome {
            Outcome::Done(reply) => Ok(reply),
            Outcome::Failed(f) => Err(f.message),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Retries `body` (bounded: 240 tries, 250 ms apart) until it is done.
async fn until_done(h: impl Fn() -> ControllerHandle, body: CommandBody) -> Reply {
    let mut last = String::new();
    for _ in 0..240 {
        match attempt(&h(), body.clone()).await {
            Ok(r) => return r,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{body:?} never got through: {last}");
}

fn start(id: &str) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: id.into(),
        channels: 0,
        format: Some(TakeFormat::Flac),
        segment_seconds: 10,
        pre_roll_ms: 0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes: u64 = std::env::var("BENCH_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let total = Duration::from_secs(minutes * 60);
    let mut tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("BENCH_SOAK_KEEP").is_some() {
        // For a look at what failed: the node's and the controller's takes.
        tmp.disable_cleanup(true);
        println!("keeping {}", tmp.path().display());
    }
    let state = tmp.path().join("state");
    let store = tmp.path().join("store");
    let takes = tmp.path().join("controller-takes");
    let pki = TestPki::new();
    pki.node_trust(&state, NODE, Validity::days(30));
    let fifo = tmp.path().join("x32.fifo");
    let feed_for = total + Duration::from_secs(600);
    let mut jack = rakkr_e2e::have("jackd").then(|| {
        rakkr_e2e::jack::JackDevice::start(Path::new(env!("CARGO_BIN_EXE_rakkr-jack-feeder")))
    });
    let feeder = jack
        .is_none()
        .then(|| PacedFeeder::start(&fifo, 32, 48_000, 512, feed_for));
    let config = |addr| {
        let mut c = ControllerConfig::new(addr, pki.server_config());
        c.store = Some(store.clone());
        c.takes = Some(takes.clone());
        c.heartbeat = Duration::from_millis(500);
        c
    };
    let mut ctl = Controller::start(config("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = ctl.local_addr();
    let proxy = rakkr_e2e::proxy::Proxy::start(addr).await;
    let mut env: HashMap<String, String> = agent_env(&state, proxy.addr);
    match &jack {
        Some(j) => env.extend(j.env(tmp.path()).into_iter().chain([
            ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32jack".to_owned()),
            ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "256".to_owned()),
        ])),
        None => {
            println!("no jackd: the paced FIFO console, without device losses");
            env.extend([
                (
                    "ALSA_CONFIG_PATH".to_owned(),
                    x32_config_for(tmp.path(), &fifo),
                ),
                ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32file".to_owned()),
                ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
            ]);
        }
    }
    env.insert("RAKKR_LOG".to_owned(), "warn".to_owned());
    let mut agent = AgentProcess::spawn(&env);
    // soak-01, then the takes that continue it after each kill:
    // soak-01-r2, soak-01-r3, ...
    let mut ids = vec!["soak-01".to_owned()];
    until_done(|| ctl.handle(), start(&ids[0])).await;
    let began = Instant::now();
    let (mut cuts, mut crashes, mut kills, mut losses) = (0u32, 0u32, 0u32, 0u32);
    let lose_at = [total / 4, total * 3 / 4];
    let (mut next_crash, mut next_cut) = (Duration::from_secs(20), Duration::from_secs(3));
    let kill_at: Vec<Duration> = (1..=5).map(|k| total * k / 6).collect();
    // Bounded by `total`: one turn every 100 ms.
    while began.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = began.elapsed();
        if t >= next_cut {
            cuts += u32::from(proxy.cut() > 0);
            next_cut = t + Duration::from_millis(2_000 + fastrand::u64(..6_000));
        }
        if t >= next_crash {
            ctl.shutdown().await;
            crashes += 1;
            ctl = Controller::start(config(addr)).await.unwrap();
            next_crash = t + Duration::from_secs(20);
        }
        if kills < 5 && t >= kill_at[kills as usize] {
            agent.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = agent.terminate(Duration::from_secs(10));
            kills += 1;
            agent = AgentProcess::spawn(&env);
            // The take goes on by itself (bounded: 240 asks).
            let next = format!("soak-01-r{}", kills + 1);
            let mut going = false;
            for _ in 0..240 {
                if let Reply::TakeStatus { take: Some(t), .. } =
                    until_done(|| ctl.handle(), CommandBody::TakeStatus).await
                    && t.take_id == next
                {
                    going = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            assert!(going, "{next} never started by itself after kill {kills}");
            ids.push(next);
        }
        if let Some(j) = jack.as_mut()
            && losses < 2
            && t >= lose_at[losses as usize]
        {
            j.crash_server();
            tokio::time::sleep(Duration::from_secs(3)).await;
            j.restart_server();
            losses += 1;
        }
    }
    until_done(
        || ctl.handle(),
        CommandBody::StopTake {
            take_id: ids.last().unwrap().clone(),
        },
    )
    .await;
    println!(
        "faults: {cuts} link cuts, {crashes} controller kills, {kills} agent kills, {losses} device losses"
    );
    // Everything reaches the controller (bounded: 10 minutes).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(Reply::Takes { takes: list, .. }) = command(
            &ctl.handle(),
            CommandBody::ListTakes {
                after: String::new(),
            },
        )
        .await
            && list
                .iter()
                .all(|t| t.status != "recording" && t.received == t.files)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every file reached the controller"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut files, mut frames, mut gap_frames) = (0usize, 0u64, 0u64);
    let (mut reported, mut unplaced_used) = (0u64, 0u64);
    let device = jack.as_ref().map(|j| j.drops()).unwrap_or_default();
    let unplaced = device.xruns + device.skipped.div_ceil(256);
    let fifo_drops = feeder
        .as_ref()
        .map(|f| f.drops().ranges())
        .unwrap_or_default();
    // The node's manifests, each with the controller's copy of its take.
    let copies: Vec<(std::path::PathBuf, serde_json::Value)> = ids
        .iter()
        .map(|id| {
            let m = rakkr_e2e::takecheck::manifest(&state.join("recordings").join(id));
            (takes.join(NODE).join(id), m)
        })
        .collect();
    for (copy, m) in &copies {
        // NOTE: the JACK console says how many holes it made, not where:
        // each take may use the whole budget, the soak no more than it.
        // (It also checks each copy's SHA-256 against the node's manifest.)
        let content = rakkr_e2e::takecheck::check_content_excusing(
            copy,
            m,
            &rakkr_e2e::takecheck::Excuses {
                drops: &fifo_drops,
                gaps: rakkr_e2e::takecheck::manifest_gaps(m),
                unplaced,
                torn_period: if jack.is_some() {
                    u64::from(rakkr_e2e::jack::PERIOD)
                } else {
                    0
                },
            },
        );
        reported += content.reported;
        unplaced_used += content.unplaced_used;
        files += m["files"].as_array().unwrap().len();
        frames += m["frames"].as_u64().unwrap();
        gap_frames += m["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["framesLost"].as_u64().unwrap())
            .sum::<u64>();
    }
    // What each kill cost: the console's signal between the last frame
    // the killed take kept and the first of the take that went on.
    let kill_losses: Vec<(String, u64)> = ids
        .windows(2)
        .zip(copies.windows(2))
        .map(|(id, c)| {
            let lost = rakkr_e2e::takecheck::signal_between((&c[0].0, &c[0].1), (&c[1].0, &c[1].1));
            (format!("{} -> {}", id[0], id[1]), lost)
        })
        .collect();
    println!(
        "soak: {minutes} min, {} takes, {files} files, {:.1} s of audio recorded, every file on the controller with the node's SHA-256",
        ids.len(),
        frames as f64 / 48_000.0
    );
    println!("| fault | count | audio lost |");
    println!("|---|---|---|");
    println!("| link cut | {cuts} | 0 (transfers resume) |");
    println!("| controller killed | {crashes} | 0 (recording never waits on it) |");
    for (take, lost) in &kill_losses {
        println!(
            "| agent kill -9 ({take}) | 1 | {:.3} s of the console's signal in neither take (goal <= 1 s) |",
            *lost as f64 / 48_000.0
        );
    }
    println!(
        "| device lost for 3 s | {losses} | {:.3} s in the manifests' gaps (device losses and xruns) |",
        gap_frames as f64 / 48_000.0
    );
    assert!(
        unplaced_used <= unplaced,
        "{unplaced_used} holes the device did not place, it reported {unplaced} ({device:?})"
    );
    println!(
        "signal: every copy decoded; each jump in it is a manifest gap ({:.3} s of jumps), one of the {unplaced} holes the JACK device reported ({unplaced_used} used) or a drop the FIFO console logged: no audio lost silently",
        reported as f64 / 48_000.0,
    );
    let worst = kill_losses.iter().map(|k| k.1).max().unwrap_or(0);
    println!(
        "worst kill: {:.3} s ({})",
        worst as f64 / 48_000.0,
        if worst <= 48_000 { "met" } else { "NOT met" }
    );
    drop(feeder);
    let _ = agent.terminate(Duration::from_secs(20));
    ctl.shutdown().await;
}
