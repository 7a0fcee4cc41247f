//! Several takes at once: what they cost the agent daemon, against
//! `arecord` capturing the same 32-channel device to WAV in the same run
//! (`cargo bench -p rakkr-e2e --bench concurrent`).
//!
//! The real agent (release build) records from the paced 32-channel test
//! console, driven by the reference controller over mTLS, in turn:
//!
//! | scenario | takes                                   | channels written |
//! |----------|-----------------------------------------|------------------|
//! | idle     | none (capture, meters, pre-roll)        | 0                |
//! | 1 × 32   | one take of every channel               | 32               |
//! | 4 × 8    | 1-8, 9-16, 17-24, 25-32                 | 32               |
//! | 4 × 32   | four overlapping takes of every channel | 128              |
//!
//! each FLAC in 10 s segments, measured for `BENCH_SECS` (default 30) after
//! 2 s of warm-up: CPU % of the agent process (/proc utime + stime), its
//! largest RSS sampled every 250 ms, and the takes' xruns and gaps.
//! Goals: the writer's CPU (above idle) grows with the channels written,
//! not with the number of takes — 4 × 8 within 1.25× of 1 × 32, 4 × 32
//! within 4.5× — and 4 × 8 adds at most 1.5× the memory 1 × 32 adds.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rakkr_controller::{Controller, ControllerConfig, ControllerEvent, ControllerHandle};
use rakkr_devpki::Validity;
use rakkr_e2e::TestPki;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};
use rakkr_protocol::{CommandBody, Outcome, Reply, TakeFormat, TakeRequest};

const NODE: &str = "bench-node";

use rakkr_e2e::procstat::sample;

async fn run(h: &ControllerHandle, body: CommandBody) -> Reply {
    match h
        .command(NODE, body, Duration::from_secs(60))
        .await
        .unwrap()
        .outcome
    {
        Outcome::Done(r) => r,
        other => panic!("{other:?}"),
    }
}

fn take(id: &str, channels: Vec<u16>) -> CommandBody {
    CommandBody::StartTakeWith(TakeRequest {
        take_id: id.into(),
        channels,
        format: Some(TakeFormat::Flac),
        segment_seconds: 10,
        pre_roll_ms: 0,
        duration_ms: 0,
        job_id: String::new(),
        start_at_ms: 0,
        end_at_ms: 0,
    })
}

struct Row {
    name: &'static str,
    written: u32,
    cpu: f64,
    rss: u64,
    xruns: u64,
    gaps: usize,
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    rakkr_e2e::ensure_tool(&["arecord", "--version"], "alsa-utils");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let pki = TestPki::new();
    pki.node_trust(&state, NODE, Validity::days(30));
    let fifo = tmp.path().join("x32.fifo");
    let _feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(secs * 6 + 300));
    let mut cfg = ControllerConfig::new("127.0.0.1:0".parse().unwrap(), pki.server_config());
    cfg.heartbeat = Duration::from_millis(500);
    let ctl = Controller::start(cfg).await.unwrap();
    let h = ctl.handle();
    let mut events = h.subscribe();
    let mut env: HashMap<String, String> = agent_env(&state, ctl.local_addr());
    env.extend([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            x32_config_for(tmp.path(), &fifo),
        ),
        ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32file".to_owned()),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
        ("RAKKR_CAPTURE_PRE_ROLL_SECONDS".to_owned(), "0".to_owned()),
        ("RAKKR_LOG".to_owned(), "warn".to_owned()),
    ]);
    let agent = AgentProcess::spawn(&env);
    rakkr_e2e::wait_for(&mut events, Duration::from_secs(60), "Connected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    let pid = agent.pid();
    let all: Vec<u16> = (1..=32).collect();
    let scenarios: [(&str, Vec<Vec<u16>>); 4] = [
        ("idle", vec![]),
        ("1 x 32", vec![all.clone()]),
        (
            "4 x 8",
            (0..4).map(|k| (k * 8 + 1..=k * 8 + 8).collect()).collect(),
        ),
        ("4 x 32", vec![all.clone(); 4]),
    ];
    println!("{secs} s per scenario, 32 ch x 48 kHz, FLAC, 10 s segments");
    let mut rows = Vec::new();
    for (n, (name, takes)) in scenarios.into_iter().enumerate() {
        let ids: Vec<String> = (0..takes.len()).map(|k| format!("s{n}-{k}")).collect();
        for (id, ch) in ids.iter().zip(&takes) {
            run(&h, take(id, ch.clone())).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu, rss) = sample(pid, secs, Duration::from_millis(250)).await;
        let (mut xruns, mut gaps) = (0, 0);
        for id in &ids {
            if let Reply::TakeStopped { manifest_json, .. } = run(
                &h,
                CommandBody::StopTake {
                    take_id: id.clone(),
                },
            )
            .await
            {
                let m: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
                xruns += m["xruns"].as_u64().unwrap_or(0);
                gaps += m["gaps"].as_array().map_or(0, Vec::len);
            }
        }
        rows.push(Row {
            name,
            written: takes.iter().map(|t| t.len() as u32).sum(),
            cpu,
            rss,
            xruns,
            gaps,
        });
    }
    drop(agent);
    ctl.shutdown().await;
    let reference = arecord(tmp.path(), secs);
    report(&rows, reference);
}

/// CPU % of `arecord` capturing the 32-channel console to WAV for `secs`
/// (its own console: the agent's is held).
fn arecord(tmp: &Path, secs: u64) -> f64 {
    let dir = tmp.join("arecord");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("x32.fifo");
    let _feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(secs + 60));
    let before =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let t = Instant::now();
    let st = Command::new("arecord")
        .env("ALSA_CONFIG_PATH", x32_config_for(&dir, &fifo))
        .args([
            "-q", "-D", "x32file", "-c", "32", "-f", "S32_LE", "-r", "48000",
        ])
        .args(["--period-size=512", "--buffer-size=2048", "-t", "wav"])
        .args(["-d", &secs.to_string()])
        .arg(dir.join("out.wav"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "arecord failed");
    let after =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let s = |u: &nix::sys::resource::Usage| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    };
    100.0 * (s(&after) - s(&before)) / t.elapsed().as_secs_f64()
}

fn report(rows: &[Row], arecord: f64) {
    let idle = &rows[0];
    let one = &rows[1];
    println!(
        "{:<8} {:>8} {:>7} {:>10} {:>10} {:>9} {:>6} {:>5}",
        "", "channels", "CPU %", "x arecord", "x 1 x 32", "RSS MiB", "xruns", "gaps"
    );
    let above = |r: &Row| (r.cpu - idle.cpu).max(0.01);
    for r in rows {
        println!(
            "{:<8} {:>8} {:>7.1} {:>10.2} {:>10} {:>9.1} {:>6} {:>5}",
            r.name,
            r.written,
            r.cpu,
            r.cpu / arecord.max(0.01),
            if r.written == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}", above(r) / above(one))
            },
            r.rss as f64 / 1024.0,
            r.xruns,
            r.gaps
        );
    }
    println!("arecord  {:>8} {arecord:>7.1}", 32);
    let mem = |r: &Row| r.rss.saturating_sub(idle.rss).max(1) as f64;
    let (cpu48, cpu432, mem48) = (
        above(&rows[2]) / above(one),
        above(&rows[3]) / above(one),
        mem(&rows[2]) / mem(one),
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "writer CPU above idle: 4 x 8 / 1 x 32 = {cpu48:.2}x (goal <= 1.25: {}), 4 x 32 / 1 x 32 = {cpu432:.2}x (goal <= 4.5: {})",
        met(cpu48 <= 1.25),
        met(cpu432 <= 4.5)
    );
    println!(
        "memory above idle: 4 x 8 / 1 x 32 = {mem48:.2}x (goal <= 1.5: {})",
        met(mem48 <= 1.5)
    );
}
