//! Take transfer numbers, each against a reference measured in the same run:
//!
//! 1. Throughput: the reference controller pulls a 32-channel WAV take
//!    (`BENCH_TRANSFER_SECS` of audio, default 60: ~276 MB) from the running
//!    agent over TLS on loopback, writes it, hashes it (SHA-256; the node
//!    hashed at seal time) and sends receipts; vs `cat` of the same files
//!    through `sha256sum` into a loopback `socat` whose receiver writes and
//!    hashes them too. Goal: >= 0.8x of that and >= 150 MB/s.
//! 2. A live 32-channel take from the paced test console while the
//!    controller pulls a take three times that size flat out: xruns and gaps of
//!    the live take (goal: none), and the round trip of a TakeStatus
//!    command and the age of meter frames at the controller, p50/p99
//!    (goal p99 <= 50 ms), against the same with no transfer running.
//!
//! Installs `socat` with apt-get if it is missing.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rakkr_controller::{ControllerEvent, ControllerHandle};
use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};
use rakkr_e2e::{TestPki, start_controller, wait_for};
use rakkr_protocol::{CommandBody, Outcome, Reply, StartTake, TakeFormat};

const NODE: &str = "bench-node";

/// Encodes `secs` of 32-channel noise as a WAV take `id` under `recordings`
/// with the agent's own `encode`; returns the take's files.
fn make_take(agent: &Path, recordings: &Path, id: &str, secs: usize) -> Vec<PathBuf> {
    let raw = recordings.with_file_name(format!("{id}.raw"));
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
        let mut x: u32 = 0x1234_5678;
        let mut frame = [0u8; 32 * 4];
        for _ in 0..secs * 48_000 {
            for s in frame.chunks_exact_mut(4) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                s.copy_from_slice(&((x & 0xffff_ff00) as i32).to_le_bytes());
            }
            w.write_all(&frame).unwrap();
        }
    }
    let st = Command::new(agent)
        .args(["encode", "--input"])
        .arg(&raw)
        .args(["--channels", "32", "--format", "wav", "--output"])
        .arg(recordings)
        .args(["--take-id", id, "--segment", "30s"])
        .env("RAKKR_STATE_DIR", recordings.with_file_name("encode-state"))
        .status()
        .unwrap();
    assert!(st.success(), "encode");
    std::fs::remove_file(&raw).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(recordings.join(id).join("manifest.json")).unwrap())
            .unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| recordings.join(id).join(f["file"].as_str().unwrap()))
        .collect()
}

/// Waits until receipts cover every file of take `id`.
async fn receipted(
    events: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    id: &str,
    files: &[PathBuf],
) {
    let want: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut got = BTreeSet::new();
    wait_for(events, Duration::from_secs(900), "every receipt", |e| {
        if let ControllerEvent::TakeReceipt {
            take_id, accepted, ..
        } = e
            && take_id == id
        {
            got.extend(accepted.iter().cloned());
        }
        want.is_subset(&got).then_some(())
    })
    .await;
}

/// The reference: cat | tee >(sha256sum) | socat → socat | tee file |
/// sha256sum, then sync of the file (the controller fsyncs each file).
fn reference(files: &[PathBuf], out: &Path) -> Duration {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut rx = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT | tee {o} | sha256sum > /dev/null; sync {o}",
            o = out.display()
        ))
        .spawn()
        .unwrap();
    // The listener is up well before this; the sender retries anyway.
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let t0 = Instant::now();
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "cat {} | tee >(sha256sum > /dev/null) | socat -u STDIN TCP:127.0.0.1:{port},retry=100,interval=0.05",
            names.join(" ")
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(rx.wait().unwrap().success());
    t0.elapsed()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// TakeStatus round trips (`n`, 50 ms apart; with `busy`, only those
/// while take bytes were arriving) and the age of each meter frame when it
/// reached the controller, meanwhile.
async fn latencies(h: &ControllerHandle, n: usize, busy: bool) -> (Vec<f64>, Vec<f64>) {
    let mut events = h.subscribe();
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let ages = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ages = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.notified() => return ages,
                    e = events.recv() => match e {
                        Ok(ControllerEvent::Meter { frame, .. }) => {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis() as f64;
                            ages.push(now - frame.captured_at_ms as f64);
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return ages,
                    },
                }
            }
        })
    };
    let mut rtt = Vec::new();
    for _ in 0..n {
        let b0 = h.take_bytes_received();
        let t0 = Instant::now();
        let r = h
            .command(NODE, CommandBody::TakeStatus, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(matches!(r.outcome, Outcome::Done(_)));
        if !busy || h.take_bytes_received() > b0 {
            rtt.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_one();
    (rtt, ages.await.unwrap())
}

fn report(what: &str, v: &mut [f64]) -> f64 {
    if v.is_empty() {
        println!("  {what}: none");
        return 0.0;
    }
    let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
    println!(
        "  {what}: p50 {p50:.1} ms, p99 {p99:.1} ms ({} samples)",
        v.len()
    );
    p99
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    rakkr_e2e::ensure_tool(&["socat", "-V"], "socat");
    let secs: usize = std::env::var("BENCH_TRANSFER_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let agent = rakkr_e2e::agent_bin();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let recordings = state.join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    let files = make_take(&agent, &recordings, "bulk", secs);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    println!(
        "take: {secs} s x 32 ch WAV, {} files, {:.1} MB",
        files.len(),
        bytes as f64 / 1e6
    );

    // 1. Throughput.
    let pki = TestPki::new();
    pki.node_trust(&state, NODE, Validity::days(30));
    let takes = tmp.path().join("controller-takes");
    let fifo = tmp.path().join("x32.fifo");
    let _feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(3600));
    let ctl = start_controller(pki.server_config(), |c| {
        c.store = Some(tmp.path().join("store"));
        c.takes = Some(takes.clone());
    })
    .await;
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
        ("RAKKR_LOG".to_owned(), "warn".to_owned()),
    ]);
    let t0 = Instant::now();
    let mut agent_proc = AgentProcess::spawn(&env);
    receipted(&mut events, "bulk", &files).await;
    let ours = t0.elapsed();
    let ours_mbs = bytes as f64 / 1e6 / ours.as_secs_f64();
    let ref_time = reference(&files, &tmp.path().join("reference.out"));
    let ref_mbs = bytes as f64 / 1e6 / ref_time.as_secs_f64();
    println!("1. transfer throughput (connect, pull, write, fsync, SHA-256, receipts)");
    println!(
        "  agent -> controller: {ours_mbs:.0} MB/s ({:.2} s)",
        ours.as_secs_f64()
    );
    println!(
        "  cat | sha256sum | socat -> socat | file + sha256sum: {ref_mbs:.0} MB/s ({:.2} s)",
        ref_time.as_secs_f64()
    );
    println!(
        "  ratio: {:.2}x (goal >= 0.8x and >= 150 MB/s)",
        ours_mbs / ref_mbs
    );

    // 2. A live take while a take of the same size is pulled flat out.
    let (mut rtt0, mut age0) = latencies(&h, 60, false).await;
    let second = make_take(&agent, &recordings, "bulk-2", 3 * secs);
    let start = h
        .command(
            NODE,
            CommandBody::StartTake(StartTake {
                take_id: "live".into(),
                channels: 0,
                format: Some(TakeFormat::Flac),
                segment_seconds: 10,
                pre_roll_ms: 0,
            }),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(
        matches!(start.outcome, Outcome::Done(Reply::Take { .. })),
        "{start:?}"
    );
    let before = h.take_bytes_received();
    // Wake the puller (a pass runs at least every 30 s; a segment close
    // or this ListTakes-driven rescan starts it).
    let (mut rtt1, mut age1) = latencies(&h, 120, true).await;
    let during = h.take_bytes_received() - before;
    let stop = h
        .command(
            NODE,
            CommandBody::StopTake {
                take_id: "live".into(),
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    receipted(&mut events, "bulk-2", &second).await;
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(recordings.join("live").join("manifest.json")).unwrap(),
    )
    .unwrap();
    println!("2. a live 32-ch take while the controller pulls another take");
    println!(
        "  pulled during the measurement: {:.1} MB; live take: {} xruns, {} gaps, status {}",
        during as f64 / 1e6,
        m["xruns"],
        m["gaps"].as_array().map_or(0, Vec::len),
        m["status"]
    );
    assert!(matches!(stop.outcome, Outcome::Done(_)));
    println!(" without transfers:");
    report("TakeStatus round trip", &mut rtt0);
    report("meter frame age", &mut age0);
    println!(" with the transfer running (round trips while bytes arrived):");
    let p99 = report("TakeStatus round trip", &mut rtt1);
    let p99m = report("meter frame age", &mut age1);
    println!(
        "  goal: p99 <= 50 ms: {}",
        if p99 <= 50.0 && p99m <= 50.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = agent_proc.terminate(Duration::from_secs(20));
    ctl.shutdown().await;
}
