//! Rakkr recording jobs through rakkr-bridge (the real binary), recorded
//! by a real agent on the paced 32-channel console and delivered to the
//! fake Rakkr controller API: every chunk in order, decoded, equal to the
//! job's channel map of the known signal (FLAC and WAV bit for bit, MP3 by
//! correlation), for each channel mode and codec; a stop mid-job delivers
//! what was recorded; a link down for 60 s, a bridge killed and replaced,
//! and a controller outage lose and duplicate nothing.
//!
//! Mixes are checked exactly: the known signal's value for 0-based
//! channel c at frame n is (c·2¹⁸ + n) at 24 bits, so the mean of channels
//! whose indices average to a whole number v is channel v's own value.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rakkr_e2e::TestPki;
use rakkr_e2e::agent::AgentProcess;
use rakkr_e2e::proxy::Proxy;
use rakkr_fake_api::{FakeRakkr, JobStatus, Options};
use serde_json::{Value, json};

use crate::T;
use crate::bridge::{role_node, start_bridge_instance, start_bridge_with};

const NODE: &str = "node_x32_test";
/// The known signal's frame counter wraps here.
const WRAP: u64 = 1 << 18;

struct Rig {
    fake: FakeRakkr,
    pki: TestPki,
    tmp: tempfile::TempDir,
    bridge: AgentProcess,
    metrics: std::net::SocketAddr,
    /// Between the agent and the bridge.
    proxy: Proxy,
    feeder: rakkr_e2e::alsa::PacedFeeder,
    agent: AgentProcess,
}

/// The fake controller, the bridge, and a node set up as Rakkr's role
/// leaves it (linked through a proxy), recording the paced console.
async fn rig(opts: Options) -> Rig {
    rig_with(opts, &[]).await
}

/// [`rig`] with `bridge_env` for the bridge.
async fn rig_with(opts: Options, bridge_env: &[(&str, &str)]) -> Rig {
    let fake = FakeRakkr::start(opts).await.unwrap();
    let token = fake.enroll(NODE);
    fake.with(|s| {
        s.nodes.get_mut(NODE).unwrap().config["recordingCapacity"]["maxConcurrentRecordings"] =
            json!(16)
    });
    let pki = TestPki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (bridge, port, _, metrics) =
        start_bridge_with(&pki, tmp.path(), &fake.url(), "bridge", bridge_env);
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    let fifo = tmp.path().join("x32.fifo");
    let feeder = rakkr_e2e::alsa::PacedFeeder::start(&fifo, 32, 48_000, 512, 10 * T);
    let mut env = role_node(
        &pki,
        &tmp.path().join("node"),
        proxy.addr.port(),
        NODE,
        &token,
    );
    env.extend([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            rakkr_e2e::alsa::x32_config_for(tmp.path(), &fifo),
        ),
        ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32file".to_owned()),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
    ]);
    let agent = AgentProcess::spawn(&env);
    agent.wait_log(&["connected to controller"], 1, T);
    Rig {
        fake,
        pki,
        tmp,
        bridge,
        metrics,
        proxy,
        feeder,
        agent,
    }
}

/// A job command: `mode` over `entries` (source, output channel), 5 s
/// chunks.
fn command(mode: &str, entries: &[(u16, Option<u16>)], codec: &str, secs: u64) -> Value {
    json!({
        "type": "alsa_capture",
        "captureDevice": "hw:CARD=X32,DEV=0",
        "captureFormat": "S32_LE",
        "captureSampleRate": 48_000,
        "captureChannels": 32,
        "durationSeconds": secs,
        "chunkSeconds": 5,
        "outputCodec": codec,
        "outputBitrateKbps": 192,
        "outputFileName": format!("{mode}.{codec}"),
        "channelMap": {
            "assignmentId": "assign_1", "channelMode": mode, "sourceChannels": 32,
            "targetId": NODE, "targetType": "node", "templateId": "tpl_1", "templateName": "Test",
            "entries": entries.iter().map(|(s, o)| json!({
                "sourceChannelIndex": s, "outputChannelIndex": o,
                "label": format!("Input {s}"), "included": true,
            })).collect::<Vec<_>>(),
        },
    })
}

fn status(fake: &FakeRakkr, job: &str) -> JobStatus {
    fake.with(|s| s.job(job).map(|j| j.status).unwrap())
}

/// Waits until `job` is `want`; else fails with what the bridge and the
/// controller say.
fn wait_status(rig: &Rig, job: &str, want: JobStatus, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    // Bounded by `within`.
    while status(&rig.fake, job) != want {
        if std::time::Instant::now() > deadline {
            let log = rig.bridge.log();
            let state = rig.fake.with(|s| {
                let j = s.job(job).unwrap();
                let r = &s.recordings[&j.recording_id];
                format!(
                    "{:?} ({:?}), chunks {:?} of {:?}",
                    j.status,
                    j.failure_reason,
                    r.chunks.keys().collect::<Vec<_>>(),
                    r.chunk_total
                )
            });
            let agent: Vec<String> = rig
                .agent
                .log()
                .into_iter()
                .filter(|l| !l.contains("audio lost"))
                .collect();
            panic!(
                "job {job} not {want:?} within {within:?}: {state}; the bridge's log ends:\n{}\nthe agent's:\n{}",
                log[log.len().saturating_sub(60)..].join("\n"),
                agent[agent.len().saturating_sub(30)..].join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Decodes `bytes` (a file with extension `ext`) to interleaved samples.
fn decoded(bytes: &[u8], ext: &str, dir: &Path) -> PathBuf {
    let p = dir.join(format!("chunk-{}.{ext}", fastrand::u64(..)));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Checks the delivery of `job`: chunks 0..total each once in order, the
/// last carrying the total, each `chunk_secs` long but the last, and
/// the audio the job's outputs (`vcs`: the 0-based console channel each
/// output must equal) of one unbroken stretch of the known signal, but
/// where the console logged dropping frames. Returns the frames delivered.
fn check_delivery(rig: &Rig, job: &str, vcs: &[usize], ext: &str, drops: &[Range<u64>]) -> u64 {
    let (chunks, total) = rig.fake.with(|s| {
        let rec = &s.job(job).unwrap().recording_id;
        let r = &s.recordings[rec];
        (r.chunks.clone(), r.chunk_total)
    });
    let total = total.unwrap_or_else(|| panic!("{job}: no chunkTotal"));
    assert_eq!(
        chunks.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>(),
        "{job}: chunks in order, none missing"
    );
    let (mut frames, mut next): (u64, Option<u64>) = (0, None);
    for (i, c) in &chunks {
        assert_eq!(
            c.content_type,
            format!("audio/{}", if ext == "mp3" { "mpeg" } else { ext })
        );
        let path = decoded(&c.bytes, ext, rig.tmp.path());
        let n = if ext == "mp3" {
            check_mp3(&path, vcs, job, *i)
        } else {
            check_exact(&path, vcs, &mut next, drops, job, *i)
        };
        if *i + 1 < total {
            assert_eq!(c.duration_seconds, 5, "{job} chunk {i}");
            assert!(n.abs_diff(240_000) < 2_400, "{job} chunk {i}: {n} frames");
        }
        frames += n;
    }
    frames
}

/// FLAC or WAV: every sample the known signal's, continuing from `next`.
fn check_exact(
    path: &Path,
    vcs: &[usize],
    next: &mut Option<u64>,
    drops: &[Range<u64>],
    job: &str,
    chunk: u32,
) -> u64 {
    let (ch, s) = rakkr_e2e::decode::interleaved_i32(path);
    assert_eq!(usize::from(ch), vcs.len(), "{job} chunk {chunk}");
    let frames = s.len() / vcs.len();
    for f in 0..frames {
        let row = &s[f * vcs.len()..(f + 1) * vcs.len()];
        let n = ((row[0] >> 8) as u64) & (WRAP - 1);
        if let Some(want) = *next
            && n != want
        {
            assert!(
                drops
                    .iter()
                    .any(|r| r.start % WRAP == want && r.end % WRAP == n),
                "{job} chunk {chunk} frame {f}: signal frame {n} where {want} was due (drops {drops:?})"
            );
        }
        for (k, vc) in vcs.iter().enumerate() {
            assert_eq!(
                row[k],
                rakkr_e2e::alsa::x32_sample(*vc, n),
                "{job} chunk {chunk} frame {f} output {k}"
            );
        }
        *next = Some((n + 1) % WRAP);
    }
    frames as u64
}

/// MP3: each output follows its channel's ramp (correlation of each
/// half-second, offset found from the audio; the median must be > 0.95).
fn check_mp3(path: &Path, vcs: &[usize], job: &str, chunk: u32) -> u64 {
    let (ch, s) = rakkr_e2e::decode::interleaved_f64(path);
    assert_eq!(usize::from(ch), vcs.len(), "{job} chunk {chunk}");
    let frames = s.len() / vcs.len();
    for (k, vc) in vcs.iter().enumerate() {
        let got: Vec<f64> = s.iter().skip(k).step_by(vcs.len()).copied().collect();
        let mut scores = Vec::new();
        for w in got.chunks_exact(24_000).skip(1) {
            // The frame counter the middle of the window carries.
            let mid = w[12_000] * f64::from(1 << 23) - (*vc as f64) * WRAP as f64;
            let n0 = mid.round() as i64 - 12_000;
            let want: Vec<f64> = (0..w.len() as i64)
                .map(|i| {
                    let n = (n0 + i).rem_euclid(WRAP as i64) as u64;
                    f64::from(rakkr_e2e::alsa::x32_sample(*vc, n)) / 2_147_483_648.0
                })
                .collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (mw, mg) = (mean(&want), mean(w));
            let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
            for (a, b) in want.iter().zip(w) {
                xy += (a - mw) * (b - mg);
                xx += (a - mw) * (a - mw);
                yy += (b - mg) * (b - mg);
            }
            scores.push(xy / (xx * yy).sqrt().max(f64::MIN_POSITIVE));
        }
        scores.sort_by(f64::total_cmp);
        let median = scores[scores.len() / 2];
        assert!(
            median > 0.95,
            "{job} chunk {chunk} output {k}: correlations {scores:?}"
        );
    }
    frames as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_mode_and_codec_is_delivered_chunk_by_chunk_as_the_map_says() {
    let rig = rig(Options::default()).await;
    // One capture group: every job starts at the same claim.
    type Mode = (&'static str, Vec<(u16, Option<u16>)>, Vec<usize>);
    let modes: [Mode; 4] = [
        ("mono", vec![(3, None), (5, None)], vec![3]),
        ("stereo", vec![(7, Some(1)), (8, Some(2))], vec![6, 7]),
        (
            "mono_to_stereo_mix",
            vec![(10, None), (12, None)],
            vec![10, 10],
        ),
        (
            "multichannel",
            vec![(20, Some(2)), (21, Some(1))],
            vec![20, 19],
        ),
    ];
    let mut jobs = Vec::new();
    for codec in ["flac", "wav", "mp3"] {
        for (mode, entries, vcs) in &modes {
            let mut c = command(mode, entries, codec, 20);
            c["captureGroupId"] = json!("cap_group_1");
            jobs.push((rig.fake.queue_job(NODE, c), codec, vcs.clone()));
        }
    }
    // A multichannel FLAC of four outputs: as Rakkr renders a map, an
    // output no entry names takes the entry at its position, if any.
    let mut c = command("multichannel", &[(1, Some(4)), (2, Some(1))], "flac", 20);
    c["captureGroupId"] = json!("cap_group_1");
    let three = rig.fake.queue_job(NODE, c);
    for (job, _, _) in &jobs {
        wait_status(&rig, job, JobStatus::Completed, 6 * T);
    }
    wait_status(&rig, &three, JobStatus::Completed, 2 * T);
    let drops = rig.feeder.drops().ranges();
    for (job, _, _) in &jobs {
        // What the agent itself reported, for a failure below.
        let m = rakkr_e2e::takecheck::manifest(&rig.tmp.path().join("node/recordings").join(job));
        eprintln!(
            "{job}: gaps {} xruns {}, device drops {drops:?}",
            m["gaps"], m["xruns"]
        );
    }
    for (job, codec, vcs) in &jobs {
        let frames = check_delivery(&rig, job, vcs, codec, &drops);
        if *codec != "mp3" {
            assert_eq!(frames, 960_000, "{job}: 20 s");
        }
        rig.fake.with(|s| {
            let j = s.job(job).unwrap();
            assert!(
                j.heartbeats >= 5,
                "{job}: lease kept ({} heartbeats)",
                j.heartbeats
            );
            let rec = &s.recordings[&j.recording_id];
            assert_eq!(rec.chunk_total, Some(4), "{job}");
            assert!(
                rec.chunks.values().all(|c| c.puts == 1),
                "{job}: each chunk once"
            );
        });
    }
    // Outputs of `three`: 1 names channel 2, 2 is the second entry's
    // (channel 1), 3 nobody's (silent), 4 names channel 1.
    let (chunks, _) = rig.fake.with(|s| {
        let r = &s.recordings[&s.job(&three).unwrap().recording_id];
        (r.chunks.clone(), r.chunk_total)
    });
    let (ch, s) =
        rakkr_e2e::decode::interleaved_i32(&decoded(&chunks[&0].bytes, "flac", rig.tmp.path()));
    assert_eq!(ch, 4);
    let n = |s: i32| (s >> 8) & 0x3ffff;
    assert!(
        s.chunks(4).all(|r| r[0] >> 26 == 1
            && r[1] >> 26 == 0
            && r[2] == 0
            && r[3] == r[1]
            && n(r[0]) == n(r[1])),
        "{:?}",
        &s[..8]
    );
    // The node was told only after the controller had each chunk: every
    // file of every job take received.
    let text = crate::bridge::get(rig.metrics, "/metrics").await;
    assert!(
        text.contains("rakkr_bridge_uploads_total{outcome=\"ok\"} 52"),
        "{text}"
    );
    let takes = node_takes(&rig);
    assert_eq!(takes.len(), jobs.len() + 1, "{takes:?}");
    for t in &takes {
        assert_eq!(t["unreceived"], 0, "{t}");
    }
    drop(rig.agent);
}

/// What the node's `takes --json` says of each of its takes.
fn node_takes(rig: &Rig) -> Vec<Value> {
    let out = rakkr_e2e::agent::run_agent(
        &["takes", "--json"],
        &HashMap::from([(
            "RAKKR_STATE_DIR".to_owned(),
            rig.tmp.path().join("node").display().to_string(),
        )]),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Waits until chunk `index` of `job` is at the controller.
fn wait_chunk(rig: &Rig, job: &str, index: u32) {
    rakkr_e2e::wait_until(3 * T, &format!("chunk {index} of {job}"), || {
        rig.fake.with(|s| {
            let j = s.job(job).unwrap();
            s.recordings[&j.recording_id].chunks.contains_key(&index)
        })
    });
}

fn chunk_total(rig: &Rig, job: &str) -> Option<u32> {
    rig.fake
        .with(|s| s.recordings[&s.job(job).unwrap().recording_id].chunk_total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_delivers_what_was_recorded_beside_an_overlapping_job() {
    let rig = rig(Options::default()).await;
    let long = rig.fake.queue_job(
        NODE,
        command("stereo", &[(7, Some(1)), (8, Some(2))], "flac", 60),
    );
    wait_chunk(&rig, &long, 0);
    // A second job on other channels while the first records.
    let other = rig
        .fake
        .queue_job(NODE, command("mono", &[(3, None), (5, None)], "wav", 10));
    rakkr_e2e::wait_until(T, "the second job claimed", || {
        status(&rig.fake, &other) == JobStatus::Running
    });
    // The operator stops the first at about 7 s.
    assert!(rig.fake.request_stop(&long));
    wait_status(&rig, &long, JobStatus::Completed, 2 * T);
    wait_status(&rig, &other, JobStatus::Completed, 2 * T);
    let drops = rig.feeder.drops().ranges();
    let frames = check_delivery(&rig, &long, &[6, 7], "flac", &drops);
    let total = chunk_total(&rig, &long).unwrap();
    assert!(
        (2..12).contains(&total) && frames > 240_000 && frames < (u64::from(total)) * 240_000,
        "stopped early, everything recorded delivered: {total} chunks, {frames} frames"
    );
    assert_eq!(check_delivery(&rig, &other, &[3], "wav", &drops), 480_000);
    assert_eq!(chunk_total(&rig, &other), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_down_for_60_s_keeps_the_lease_and_every_chunk_arrives_after() {
    let rig = rig(Options::default()).await;
    let job = rig.fake.queue_job(
        NODE,
        command("mono_to_stereo_mix", &[(10, None), (12, None)], "flac", 40),
    );
    wait_chunk(&rig, &job, 0);
    assert!(rig.proxy.block() > 0, "the agent's link was up");
    let beats = rig.fake.with(|s| s.job(&job).unwrap().heartbeats);
    // The link stays down for 60 s (twice the lease): the scenario, not a
    // wait for an event.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    rig.fake.with(|s| {
        let j = s.job(&job).unwrap();
        assert_eq!(
            j.status,
            JobStatus::Running,
            "lease kept while the node is away"
        );
        assert!(
            j.heartbeats >= beats + 20,
            "{} heartbeats in 60 s",
            j.heartbeats - beats
        );
    });
    rig.proxy.restore();
    wait_status(&rig, &job, JobStatus::Completed, 3 * T);
    let drops = rig.feeder.drops().ranges();
    assert_eq!(
        check_delivery(&rig, &job, &[10, 10], "flac", &drops),
        1_920_000
    );
    assert_eq!(chunk_total(&rig, &job), Some(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_job_is_replaced_and_no_chunk_is_missing_or_doubled() {
    let mut rig = rig(Options::default()).await;
    let job = rig.fake.queue_job(
        NODE,
        command("multichannel", &[(1, None), (2, None)], "wav", 30),
    );
    wait_chunk(&rig, &job, 1);
    rig.bridge.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(rig.bridge.wait_exit(T).is_some());
    // Another instance: its own (empty) cache, the same node credentials.
    let (second, port, _, _) =
        start_bridge_instance(&rig.pki, rig.tmp.path(), &rig.fake.url(), "second");
    rig.proxy.set_target(([127, 0, 0, 1], port).into());
    rig.proxy.cut();
    rig.bridge = second;
    wait_status(&rig, &job, JobStatus::Completed, 4 * T);
    assert!(rig.bridge.count(&["adopting the node's unfinished job"]) == 1);
    let drops = rig.feeder.drops().ranges();
    assert_eq!(
        check_delivery(&rig, &job, &[0, 1], "wav", &drops),
        1_440_000
    );
    assert_eq!(chunk_total(&rig, &job), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_outage_revokes_nothing_and_everything_is_delivered_after() {
    // Rakkr's lease is configurable: one longer than the outage.
    let rig = rig(Options {
        lease: std::time::Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    let job = rig
        .fake
        .queue_job(NODE, command("mono", &[(31, None)], "flac", 30));
    wait_chunk(&rig, &job, 0);
    // The database goes down: 401 on node routes, /readyz 503, for 30 s.
    rig.fake.set_ready(false);
    let refused = rig
        .fake
        .with(|s| s.unauthorized.load(std::sync::atomic::Ordering::SeqCst));
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    let during = rig
        .fake
        .with(|s| s.unauthorized.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        during > refused + 10,
        "the bridge kept trying: {} 401s",
        during - refused
    );
    rig.fake.set_ready(true);
    wait_status(&rig, &job, JobStatus::Completed, 3 * T);
    let drops = rig.feeder.drops().ranges();
    assert_eq!(check_delivery(&rig, &job, &[30], "flac", &drops), 1_440_000);
    assert!(
        rig.tmp
            .path()
            .join("bridge/credentials")
            .join(format!("{NODE}.token"))
            .exists(),
        "the node's token is kept"
    );
    assert_eq!(rig.bridge.count(&["token was refused"]), 0);
    assert!(rig.fake.with(|s| s.nodes[NODE].heartbeats.len()) > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchunked_job_is_one_file_and_one_over_the_limit_fails_keeping_its_audio() {
    // The controller takes at most 1 MB a file (RAKKR_RECORDING_CACHE_MAX_BYTES).
    let rig = rig(Options {
        cache_max_bytes: 1_000_000,
        ..Options::default()
    })
    .await;
    let mut whole = command("mono", &[(9, None)], "flac", 8);
    whole.as_object_mut().unwrap().remove("chunkSeconds");
    let whole = rig.fake.queue_job(NODE, whole);
    let mut big = command("stereo", &[(1, Some(1)), (2, Some(2))], "wav", 8);
    big.as_object_mut().unwrap().remove("chunkSeconds");
    let big = rig.fake.queue_job(NODE, big);
    wait_status(&rig, &whole, JobStatus::Completed, 3 * T);
    wait_status(&rig, &big, JobStatus::Failed, 3 * T);
    let drops = rig.feeder.drops().ranges();
    let (file, total, cached) = rig.fake.with(|s| {
        let r = &s.recordings[&s.job(&whole).unwrap().recording_id];
        assert_eq!(
            r.chunks.keys().copied().collect::<Vec<_>>(),
            vec![0],
            "one file"
        );
        (r.chunks[&0].clone(), r.chunk_total, r.cached)
    });
    assert_eq!((total, cached), (None, true));
    assert_eq!(file.file_name, "mono.flac");
    assert_eq!(file.duration_seconds, 8);
    let path = decoded(&file.bytes, "flac", rig.tmp.path());
    assert_eq!(
        check_exact(&path, &[8], &mut None, &drops, &whole, 0),
        384_000
    );
    let reason = rig
        .fake
        .with(|s| s.job(&big).unwrap().failure_reason.clone())
        .unwrap_or_default();
    assert!(reason.starts_with("cache_file_too_large"), "{reason}");
    // Its audio stays on the node, not receipted, for an operator to fetch.
    let takes = node_takes(&rig);
    let kept = takes
        .iter()
        .find(|t| t["takeId"] == big.as_str())
        .unwrap_or_else(|| panic!("{takes:?}"));
    assert_eq!(kept["status"], "complete", "{kept}");
    assert_eq!(kept["received"], 0, "{kept}");
    assert_eq!(kept["frames"], 384_000, "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_the_lease_lapses_said_why_and_the_node_keeps_the_audio() {
    // A 10 s lease (swept every second) and a 3 s grace, to be quick.
    let rig = rig_with(
        Options {
            lease: std::time::Duration::from_secs(10),
            sweep: std::time::Duration::from_secs(1),
            ..Options::default()
        },
        &[("RAKKR_BRIDGE_LEASE_GRACE_SECONDS", "3")],
    )
    .await;
    let job = rig
        .fake
        .queue_job(NODE, command("mono", &[(4, None)], "flac", 30));
    wait_chunk(&rig, &job, 0);
    assert!(rig.proxy.block() > 0);
    // Away past the grace: no more heartbeats, the lease runs out, the
    // controller hears why.
    wait_status(&rig, &job, JobStatus::Failed, 3 * T);
    let lapsed = rig.fake.with(|s| {
        s.nodes[NODE]
            .health_events
            .iter()
            .find(|e| e["type"] == "agent.recording_job.lease_lapsed")
            .cloned()
    });
    let lapsed = lapsed.expect("a lease_lapsed health event");
    assert_eq!(lapsed["details"]["jobId"], job.as_str(), "{lapsed}");
    assert_eq!(lapsed["details"]["graceSeconds"], 3, "{lapsed}");
    assert_eq!(
        rig.fake
            .with(|s| s.job(&job).unwrap().failure_reason.clone()),
        Some("lease_expired".into())
    );
    // Back: the job is over at the controller, but the show went on: the
    // take records its whole 30 s and keeps it on the node; nothing more
    // went up.
    rig.proxy.restore();
    rig.bridge
        .wait_log(&["job ended without a complete delivery"], 1, 2 * T);
    let take = || node_takes(&rig).into_iter().next().unwrap_or_default();
    rakkr_e2e::wait_until(3 * T, "the take to end by itself", || {
        take()["status"] == "complete"
    });
    let t = take();
    assert_eq!(t["frames"], 1_440_000, "{t}");
    assert!(t["unreceived"].as_u64().unwrap() > 0, "{t}");
    rig.fake.with(|s| {
        let r = &s.recordings[&s.job(&job).unwrap().recording_id];
        assert_eq!(r.chunks.keys().copied().collect::<Vec<_>>(), vec![0]);
    });
}
