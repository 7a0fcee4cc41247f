//! Foundation numbers, each against a reference measured in the same run:
//!
//! 1. `--print-inventory` wall time (median of 15) vs `arecord -l`, which is
//!    what today's agent runs for its inventory.
//! 2. TCP connect + mutual TLS 1.3 + Hello/Welcome on loopback (median of
//!    50) vs a bare mutual-TLS handshake with the same certificates.
//! 3. Idle link bytes per minute (both directions, TLS records included) vs
//!    one inventory JSON every 5 s (what the controller's current agent sends).
//! 4. Idle RSS of the running agent vs the 16 MiB goal.
//!
//! `BENCH_IDLE_SECS` (default 60) sets the idle window.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rakkr_controller::ControllerEvent;
use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::{TestPki, start_controller, wait_for};
use rakkr_protocol::client::{Endpoint, connect};
use rakkr_protocol::tls::{self, Identity};
use rakkr_protocol::{Hello, Resume};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_cmd(n: usize, mut make: impl FnMut() -> Command) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let out = make().output().ok()?;
        let _ = out.status;
        times.push(t.elapsed());
    }
    Some(median(times))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agent = rakkr_e2e::agent_bin();
    println!("agent binary: {}", agent.display());

    // 1. Inventory wall time.
    let state = tempfile::tempdir().unwrap();
    let inv = time_cmd(15, || {
        let mut c = Command::new(&agent);
        c.env_clear()
            .env("RAKKR_STATE_DIR", state.path())
            .env("RAKKR_CONFIG", "/dev/null")
            .arg("--print-inventory");
        c
    })
    .unwrap();
    let arecord = time_cmd(15, || {
        let mut c = Command::new("arecord");
        c.arg("-l");
        c
    });
    match arecord {
        Some(r) => println!(
            "inventory: --print-inventory median {:.1} ms (goal <= 50 ms); reference arecord -l {:.1} ms; ratio {:.2}x",
            ms(inv),
            ms(r),
            inv.as_secs_f64() / r.as_secs_f64()
        ),
        None => println!(
            "inventory: --print-inventory median {:.1} ms (goal <= 50 ms); arecord not installed",
            ms(inv)
        ),
    }

    // 2. Handshake latency.
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |c| {
        c.heartbeat = Duration::from_secs(15)
    })
    .await;
    let node = pki.ca.issue_node("bench-node", Validity::days(1)).unwrap();
    let client = || {
        let id =
            Identity::from_pem(node.cert_pem.as_bytes(), node.key_pem.as_bytes(), "bench").unwrap();
        tls::client_config(std::slice::from_ref(&pki.ca.cert_der), id).unwrap()
    };
    let inventory_json = String::from_utf8(
        Command::new(&agent)
            .env_clear()
            .env("RAKKR_CONFIG", "/dev/null")
            .env("RAKKR_STATE_DIR", state.path())
            .arg("--print-inventory")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let endpoint = Endpoint {
        address: ctl.local_addr().to_string(),
        server_name: tls::server_name("127.0.0.1").unwrap(),
    };
    let cfg = client();
    let mut ours = Vec::new();
    for i in 0..50 {
        let hello = Hello {
            versions: rakkr_protocol::version::SUPPORTED,
            agent_version: "bench".into(),
            build_target: "bench".into(),
            node_id: "bench-node".into(),
            inventory_json: inventory_json.clone(),
            resume: Resume {
                stream_id: 1,
                next_seq: i,
            },
        };
        let t = Instant::now();
        let (framed, _w) = connect(&endpoint, cfg.clone(), hello, Duration::from_secs(5))
            .await
            .unwrap();
        ours.push(t.elapsed());
        drop(framed);
    }
    // Reference: bare mutual TLS 1.3 handshake, same certificates, same machine.
    let server_cfg = pki.server_config();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
        while let Ok((tcp, _)) = listener.accept().await {
            let a = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = a.accept(tcp).await {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"k").await;
                }
            });
        }
    });
    let mut raw = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let tcp = tokio::net::TcpStream::connect(raw_addr).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(endpoint.server_name.clone(), tcp)
            .await
            .unwrap();
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut b)
            .await
            .unwrap(); // server finished verifying us
        raw.push(t.elapsed());
    }
    let (o, r) = (median(ours), median(raw));
    println!(
        "handshake: connect+TLS+Hello/Welcome median {:.2} ms (goal <= 10 ms); bare mutual TLS 1.3 {:.2} ms; ratio {:.2}x; Hello carried {} bytes of inventory",
        ms(o),
        ms(r),
        o.as_secs_f64() / r.as_secs_f64(),
        inventory_json.len()
    );

    // 3 + 4. Idle link traffic and idle RSS of the real agent.
    let idle = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let st2 = tempfile::tempdir().unwrap();
    pki.node_trust(st2.path(), "bench-idle", Validity::days(1));
    let h = ctl.handle();
    let mut rx = h.subscribe();
    let mut env = agent_env(st2.path(), ctl.local_addr());
    env.insert("RAKKR_LOG".into(), "warn".into());
    let mut proc_ = AgentProcess::spawn(&env);
    wait_for(
        &mut rx,
        Duration::from_secs(20),
        "bench agent connected",
        |e| {
            matches!(e, ControllerEvent::Connected { node, .. } if node == "bench-idle")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let start-up events settle
    let info = h.node("bench-idle").unwrap();
    let before =
        info.counters.rx.load(Ordering::Relaxed) + info.counters.tx.load(Ordering::Relaxed);
    tokio::time::sleep(idle).await;
    let after = info.counters.rx.load(Ordering::Relaxed) + info.counters.tx.load(Ordering::Relaxed);
    let per_min = (after - before) as f64 * 60.0 / idle.as_secs_f64();
    let reference = inventory_json.len() as f64 * 12.0;
    println!(
        "idle link: {:.0} bytes/minute over {}s (heartbeat 15 s); reference one inventory JSON per 5 s = {:.0} bytes/minute; ratio {:.4}x",
        per_min,
        idle.as_secs(),
        reference,
        per_min / reference
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc_.pid())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let rss = field("VmRSS:") / 1024.0;
    let libs = std::fs::read_to_string(format!("/proc/{}/maps", proc_.pid()))
        .map(|m| {
            let mut v: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| p.contains(".so"))
                .collect();
            v.sort();
            v.dedup();
            v.len()
        })
        .unwrap_or(0);
    println!(
        "idle RSS: {:.1} MiB (peak {:.1} MiB; private {:.1} MiB, shared-library pages {:.1} MiB from {} shared objects); goal 16 MiB; ratio {:.2}x",
        rss,
        field("VmHWM:") / 1024.0,
        field("RssAnon:") / 1024.0,
        field("RssFile:") / 1024.0,
        libs,
        rss / 16.0
    );
    // Reference: the same binary doing nothing but print its version (the
    // floor set by the libraries it links).
    let floor = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(&agent)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .and_then(|l| l.trim().parse::<f64>().ok())
        });
    if let Some(kb) = floor {
        println!(
            "idle RSS reference: `--version` of the same binary peaks at {:.1} MiB; agent idle / that = {:.2}x",
            kb / 1024.0,
            rss / (kb / 1024.0)
        );
    }
    assert!(proc_.terminate(Duration::from_secs(5)).unwrap().success());
    ctl.shutdown().await;
}
