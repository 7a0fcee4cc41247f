//! Live listen latency: from the capture of a frame's first sample to the
//! reference controller on loopback, while a 32-channel take records from
//! the paced test console. Goal: p99 <= 250 ms.
//!
//! Against a reference measured in the same run: the age of meter frames
//! at the controller (the other live path from the same capture), compared
//! with the listen frames' age from their last sample. NOTE: a meter frame
//! is stamped when the engine processes its window, a listen frame with
//! the capture time of its audio (processing time less the block and the
//! ring's backlog), so the ratio also shows how far behind the capture the
//! engine runs at times (segment rollovers, encoder bursts).
//!
//! `BENCH_LISTEN_SECS` (default 20) per setting.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use rakkr_controller::ControllerEvent;
use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};
use rakkr_e2e::{TestPki, start_controller};
use rakkr_protocol::{CommandBody, ListenRequest, Outcome, Reply, StartTake, TakeFormat};

const NODE: &str = "bench-listen";

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("BENCH_LISTEN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let pki = TestPki::new();
    pki.node_trust(&state, NODE, Validity::days(30));
    let fifo = tmp.path().join("x32.fifo");
    let _feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(3600));
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let h = ctl.handle();
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
    let mut agent = AgentProcess::spawn(&env);
    let started = loop {
        let r = h
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
            .await;
        match r.map(|r| r.outcome) {
            Ok(Outcome::Done(Reply::Take { .. })) => break true,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(started);
    println!(
        "listen latency, capture -> controller on loopback, a 32-ch take recording ({secs} s each)"
    );
    let mut worst = 0.0f64;
    for (rate, frame_ms, channels) in [(48_000u32, 20u32, vec![]), (16_000, 100, vec![1, 2])] {
        let req = ListenRequest {
            channels,
            rate,
            frame_ms,
        };
        let mut events = h.subscribe();
        let mut sink = std::io::sink();
        let listen =
            rakkr_controller::listen::listen(&h, NODE, &req, Duration::from_secs(secs), &mut sink);
        // Meter frame ages over the same time.
        let ages = async {
            let mut ages = Vec::new();
            let end = tokio::time::Instant::now() + Duration::from_secs(secs);
            while let Ok(Ok(e)) = tokio::time::timeout_at(end, events.recv()).await {
                if let ControllerEvent::Meter { frame, .. } = e {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as f64;
                    ages.push(now - frame.captured_at_ms as f64);
                }
            }
            ages
        };
        let (heard, mut ages) = tokio::join!(listen, ages);
        let heard = heard.unwrap();
        let mut first: Vec<f64> = heard.latencies_ms.iter().map(|l| *l as f64).collect();
        let mut last: Vec<f64> = first.iter().map(|l| l - f64::from(frame_ms)).collect();
        let (p50, p99) = (quantile(&mut first, 0.5), quantile(&mut first, 0.99));
        let last99 = quantile(&mut last, 0.99);
        let meter99 = quantile(&mut ages, 0.99);
        worst = worst.max(p99);
        println!(
            "  {rate} Hz, {frame_ms} ms frames: {} frames, {} missing; first sample p50 {p50:.0} ms, p99 {p99:.0} ms",
            heard.frames, heard.missing
        );
        println!(
            "    last sample p99 {last99:.0} ms vs meter frames p99 {meter99:.0} ms: ratio {:.2}x",
            last99 / meter99.max(1.0)
        );
    }
    println!(
        "  goal p99 <= 250 ms: {}",
        if worst <= 250.0 { "met" } else { "NOT met" }
    );
    let _ = h
        .command(
            NODE,
            CommandBody::StopTake {
                take_id: "live".into(),
            },
            Duration::from_secs(30),
        )
        .await;
    let _ = agent.terminate(Duration::from_secs(20));
    ctl.shutdown().await;
}
