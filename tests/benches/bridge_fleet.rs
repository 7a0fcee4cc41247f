//! One rakkr-bridge (release binary) between `BENCH_NODES` (default 1,000)
//! simulated agents and the fake Rakkr API
//! (`cargo bench -p rakkr-e2e --bench bridge_fleet`).
//!
//! Each simulated agent is a protocol client without audio: mutual TLS with
//! its own certificate, Hello with a 32-channel inventory, a meter frame
//! every second, protocol heartbeats, a health edge every 10 s, and an
//! answer to every command (no takes; other commands unsupported). The
//! bridge heartbeats each node to the API every 5 s, forwards its newest
//! meter frame at that tick and each health edge at once.
//!
//! Measured for `BENCH_SECS` (default 60) after a warm-up: the bridge's
//! CPU % (/proc utime + stime), RSS above its idle RSS per node, the p50 /
//! p99 forward latency of health edges (the agent's event time to the
//! API's arrival) and of meter frames (capture time to arrival: up to a
//! tick by design, latest wins). Reference in the same run: the reference
//! controller (`rakkr-controller serve`, our protocol only, nothing
//! forwarded) with the same fleet, so the ratios are what bridging costs.
//! Goals: under one core, at most 256 KiB per node, p99 edge ≤ 200 ms.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rakkr_devpki::Validity;
use rakkr_e2e::TestPki;
use rakkr_e2e::agent::AgentProcess;
use rakkr_e2e::procstat::{rss_of, sample};
use rakkr_fake_api::{FakeRakkr, Options};
use rakkr_protocol::client::{Endpoint, connect};
use rakkr_protocol::health::{HealthEvent, HealthSignal, Severity};
use rakkr_protocol::tls::{self, Identity};
use rakkr_protocol::{
    AgentMsg, CommandResult, ControllerMsg, Event, EventBody, Failure, FailureCode, Hello, Level,
    MeterFrame, Outcome, Reply, Resume,
};
use tokio::sync::watch;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn inventory(node: &str) -> String {
    let channels: Vec<_> = (1..=32)
        .map(|i| serde_json::json!({"alias": format!("Input {i}"), "index": i}))
        .collect();
    serde_json::json!({
        "agentVersion": "2026.12.06-1", "hostname": node, "ipAddresses": ["10.0.0.1"],
        "runtime": {"architecture": "aarch64", "audioBackends": ["alsa"], "kernelRelease": "6.1", "osName": "Debian", "uptimeSeconds": 1},
        "interfaces": [{"id": "alsa_card_X32_dev_0", "alias": "X32", "backend": "alsa", "channelCount": 32,
            "channels": channels, "hardwarePath": "/sys/class/sound/card1", "sampleRates": [48000],
            "serialNumber": "S1", "systemName": "X32", "systemRef": "hw:CARD=X32,DEV=0"}],
    })
    .to_string()
}

/// One simulated agent, until `stop`.
async fn agent(
    addr: String,
    cfg: Arc<rustls::ClientConfig>,
    node: String,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let endpoint = Endpoint {
        address: addr,
        server_name: tls::server_name("127.0.0.1").unwrap(),
    };
    let hello = Hello {
        versions: rakkr_protocol::version::SUPPORTED,
        agent_version: "bench".into(),
        build_target: "bench".into(),
        node_id: node.clone(),
        inventory_json: inventory(&node),
        resume: Resume {
            stream_id: u64::from(fastrand::u32(..)),
            next_seq: 1,
        },
    };
    let Ok((framed, welcome)) = connect(&endpoint, cfg, hello, Duration::from_secs(30)).await
    else {
        return false;
    };
    let (mut tx, mut rx) = framed.split();
    let start = tokio::time::Instant::now() + Duration::from_millis(fastrand::u64(..1000));
    let mut meter = tokio::time::interval_at(start, Duration::from_secs(1));
    let mut beat = tokio::time::interval(Duration::from_millis(u64::from(welcome.heartbeat_ms)));
    let mut edge = tokio::time::interval_at(start, Duration::from_secs(10));
    let (mut seq, mut raised) = (0u64, false);
    // Bounded: ends on `stop` or when the bridge closes the link.
    loop {
        let out = tokio::select! {
            _ = stop.changed() => return true,
            m = rx.next() => match m {
                Some(Ok(ControllerMsg::Command(c))) => {
                    let outcome = match c.body {
                        rakkr_protocol::CommandBody::ListTakes { .. } => {
                            Outcome::Done(Reply::Takes { takes: Vec::new(), more: false })
                        }
                        _ => Outcome::Failed(Failure {
                            code: FailureCode::Unsupported,
                            message: "a simulated agent".into(),
                        }),
                    };
                    AgentMsg::Result(CommandResult { id: c.id, outcome })
                }
                Some(Ok(_)) => continue,
                _ => return true,
            },
            _ = meter.tick() => AgentMsg::Meter(MeterFrame {
                captured_at_ms: now_ms(),
                interface_id: "alsa_card_X32_dev_0".into(),
                levels: (1..=32).map(|i| Level {
                    channel_index: i,
                    peak_dbfs: -12.0,
                    rms_dbfs: -20.0,
                    clipping: false,
                    quality: None,
                }).collect(),
            }),
            _ = beat.tick() => AgentMsg::Heartbeat,
            _ = edge.tick() => {
                seq += 1;
                raised = !raised;
                AgentMsg::Event(Event {
                    seq,
                    at_ms: now_ms(),
                    body: EventBody::Health(HealthEvent {
                        signal: HealthSignal::Clipping,
                        raised,
                        severity: Severity::Warning,
                        interface_id: "alsa_card_X32_dev_0".into(),
                        channels: vec![3],
                        value: -0.5,
                        threshold: -1.0,
                        observations: 3,
                        summary: "channel 3 clips".into(),
                    }),
                })
            }
        };
        if tx.send(out).await.is_err() {
            return true;
        }
    }
}

/// Links `nodes` simulated agents to `addr`, 64 handshakes at a time;
/// how many linked.
async fn fleet(
    addr: std::net::SocketAddr,
    configs: &[(String, Arc<rustls::ClientConfig>)],
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<bool>> {
    let mut tasks = Vec::new();
    for batch in configs.chunks(64) {
        for (node, cfg) in batch {
            tasks.push(tokio::spawn(agent(
                addr.to_string(),
                cfg.clone(),
                node.clone(),
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

fn percentile(v: &mut [i64], p: f64) -> i64 {
    if v.is_empty() {
        return -1;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `port`.
async fn accepting(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {port}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("BENCH_NODES", 1_000) as usize;
    let secs = env_u64("BENCH_SECS", 60);
    let tmp = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let fake = FakeRakkr::start(Options::default()).await.unwrap();
    let creds = tmp.path().join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    let mut configs = Vec::new();
    for i in 0..n {
        let node = format!("node_sim_{i:04}");
        let token = fake.enroll(&node);
        std::fs::write(creds.join(format!("{node}.token")), token).unwrap();
        let leaf = pki.ca.issue_node(&node, Validity::days(1)).unwrap();
        let id =
            Identity::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), "sim").unwrap();
        let cfg = tls::client_config(std::slice::from_ref(&pki.ca.cert_der), id).unwrap();
        configs.push((node, cfg));
    }
    let files = tmp.path().join("pki");
    std::fs::create_dir_all(files.join("controller")).unwrap();
    let ca = write(&files, "ca.pem", &pki.ca.cert_pem);
    let ca_key = write(&files, "ca.key", &pki.ca.key_pem());
    let cert = write(&files, "bridge.pem", &pki.controller.cert_pem);
    let key = write(&files, "bridge.key", &pki.controller.key_pem);
    write(&files.join("controller"), "ca.pem", &pki.ca.cert_pem);
    write(
        &files.join("controller"),
        "controller.pem",
        &pki.controller.cert_pem,
    );
    write(
        &files.join("controller"),
        "controller.key",
        &pki.controller.key_pem,
    );
    println!(
        "{n} simulated agents, {secs} s measured per run, this machine ({} CPUs)",
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // Reference: the reference controller, the same fleet, nothing forwarded.
    let port = free_port();
    let mut env = HashMap::new();
    env.insert("RAKKR_LOG".to_owned(), "warn".to_owned());
    let listen = format!("127.0.0.1:{port}");
    let reference = AgentProcess::spawn_bin(
        &rakkr_e2e::controller_bin(),
        &[
            "serve",
            "--listen",
            &listen,
            "--certs",
            &files.display().to_string(),
        ],
        &env,
    );
    accepting(port).await;
    let idle_ref = rss_of(reference.pid());
    let (stop, stopped) = watch::channel(false);
    let tasks = fleet(([127, 0, 0, 1], port).into(), &configs, &stopped).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (ref_cpu, ref_rss) = sample(reference.pid(), secs, Duration::from_millis(500)).await;
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(reference);

    // The bridge.
    let port = free_port();
    let mut env: HashMap<String, String> = [
        (
            "RAKKR_BRIDGE_CONFIG",
            tmp.path().join("none.toml").display().to_string(),
        ),
        ("RAKKR_BRIDGE_API_URL", fake.url()),
        ("RAKKR_BRIDGE_LISTEN", format!("127.0.0.1:{port}")),
        ("RAKKR_BRIDGE_METRICS_LISTEN", "off".into()),
        ("RAKKR_BRIDGE_CREDENTIALS_DIR", creds.display().to_string()),
        (
            "RAKKR_BRIDGE_CACHE_DIR",
            tmp.path().join("cache").display().to_string(),
        ),
        ("RAKKR_BRIDGE_CA_CERT", ca),
        ("RAKKR_BRIDGE_CA_KEY", ca_key),
        ("RAKKR_BRIDGE_CERT", cert),
        ("RAKKR_BRIDGE_KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.insert("RAKKR_LOG".into(), "warn".into());
    let bridge = AgentProcess::spawn_bin(&rakkr_e2e::bridge_bin(), &[], &env);
    accepting(port).await;
    let idle = rss_of(bridge.pid());
    let (stop, stopped) = watch::channel(false);
    let tasks = fleet(([127, 0, 0, 1], port).into(), &configs, &stopped).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    fake.with(|s| {
        for node in s.nodes.values_mut() {
            node.meter_lags_ms.clear();
            node.event_lags_ms.clear();
        }
    });
    let (cpu, rss) = sample(bridge.pid(), secs, Duration::from_millis(500)).await;
    let (mut meters, mut edges, beats, linked) = fake.with(|s| {
        let (mut m, mut e, mut b, mut l) = (Vec::new(), Vec::new(), 0, 0);
        for node in s.nodes.values() {
            m.extend(&node.meter_lags_ms);
            e.extend(&node.event_lags_ms);
            b += node.heartbeats.len();
            l += usize::from(!node.heartbeats.is_empty());
        }
        (m, e, b, l)
    });
    let _ = stop.send(true);
    let mut connected = 0;
    for t in tasks {
        connected += usize::from(t.await.unwrap_or(false));
    }
    drop(bridge);

    let per_node = |rss: u64, idle: u64| rss.saturating_sub(idle) as f64 / n as f64;
    let (bridge_kib, ref_kib) = (per_node(rss, idle), per_node(ref_rss, idle_ref));
    let (e50, e99) = (percentile(&mut edges, 0.5), percentile(&mut edges, 0.99));
    let (m50, m99) = (percentile(&mut meters, 0.5), percentile(&mut meters, 0.99));
    println!("                        CPU %   RSS MiB  KiB/node");
    println!(
        "reference controller  {ref_cpu:7.1}  {:8.1}  {ref_kib:8.1}",
        ref_rss as f64 / 1024.0
    );
    println!(
        "rakkr-bridge          {cpu:7.1}  {:8.1}  {bridge_kib:8.1}",
        rss as f64 / 1024.0
    );
    println!(
        "bridge / reference: CPU {:.2}x, memory per node {:.2}x",
        cpu / ref_cpu.max(0.01),
        bridge_kib / ref_kib.max(0.01)
    );
    println!(
        "linked {connected}/{n}; forwarded to the API: {linked} nodes heartbeating ({beats} heartbeats), {} health edges, {} meter frames",
        edges.len(),
        meters.len()
    );
    println!(
        "health edge forward latency: p50 {e50} ms, p99 {e99} ms (goal <= 200 ms: {})",
        if (0..=200).contains(&e99) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "meter frame age at arrival: p50 {m50} ms, p99 {m99} ms (forwarded at the 5 s tick, latest wins: up to 1 s by design)"
    );
    println!(
        "goals: CPU under one core ({}), <= 256 KiB per node ({})",
        if cpu < 100.0 { "met" } else { "NOT met" },
        if bridge_kib <= 256.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
