//! Takes leaving the node: the reference controller pulls every closed
//! file as it closes (real agent, real TLS, the paced 32-channel console),
//! verifies it, and sends receipts; retention deletes only what the
//! controller holds; a file changed on the node is refused, never
//! received.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rakkr_controller::{Controller, ControllerConfig, ControllerEvent};
use rakkr_e2e::wait_for;
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply, StartTake, TakeFormat};

use crate::takes::{
    NODE, Setup, audio_taken, drops, recording_setup_with, run, spawn_recording, started, stopped,
    wait_logged,
};

fn take(id: &str, segment_seconds: u32) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: id.into(),
        channels: 0,
        format: Some(TakeFormat::Flac),
        segment_seconds,
        pre_roll_ms: 0,
    })
}

/// The files a final manifest lists.
fn listed(m: &serde_json::Value) -> BTreeSet<String> {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the controller has sent receipts the node accepted for
/// every file in `files` of `take_id`.
async fn all_receipted(
    events: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    take_id: &str,
    files: &BTreeSet<String>,
) {
    let mut got = BTreeSet::new();
    wait_for(
        events,
        Duration::from_secs(120),
        "receipts for every file",
        |e| {
            if let ControllerEvent::TakeReceipt {
                take_id: t,
                accepted,
                ..
            } = e
                && t == take_id
            {
                got.extend(accepted.iter().cloned());
            }
            files.is_subset(&got).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_streams_to_the_controller_while_it_records_and_arrives_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let takes = tmp.path().join("controller-takes");
    let Setup {
        feeder,
        ctl,
        mut events,
        env,
        ..
    } = recording_setup_with(tmp.path(), &[], false, |c| c.takes = Some(takes.clone())).await;
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    let mut seen = h.subscribe();
    started(&h, take("stream", 2)).await;
    // Segment 1's 32 files arrive, verified, while the take still records.
    let mut first = BTreeSet::new();
    wait_for(
        &mut seen,
        Duration::from_secs(60),
        "segment 1 on the controller",
        |e| {
            if let ControllerEvent::TakeFileStored { file, verified, .. } = e {
                assert!(verified, "{file} arrived damaged");
                if file.ends_with("-s001.flac") {
                    first.insert(file.clone());
                }
            }
            (first.len() == 32).then_some(())
        },
    )
    .await;
    match run(&h, CommandBody::TakeStatus).await {
        Outcome::Done(Reply::TakeStatus { take: Some(t), .. }) => assert_eq!(t.take_id, "stream"),
        other => panic!("the take should still record: {other:?}"),
    }
    audio_taken(&h, 25).await;
    let m = stopped(&h, "stream").await;
    let files = listed(&m);
    assert!(files.len() >= 64, "at least two segments: {}", files.len());
    all_receipted(&mut seen, "stream", &files).await;
    // The controller's copy: every file, whole, decoding to the signal.
    let copy = takes.join(NODE).join("stream");
    for f in m["files"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap();
        assert_eq!(
            rakkr_e2e::update::sha256_hex(&copy.join(name)),
            f["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    let frames = rakkr_e2e::takecheck::check_content(&copy, &m, &drops(&feeder));
    assert_eq!(frames, m["frames"].as_u64().unwrap());
    // The node's manifest holds a receipt for every file.
    let node_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("state/recordings/stream/manifest.json")).unwrap(),
    )
    .unwrap();
    let received: BTreeSet<String> = node_manifest["transfer"]["received"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(received, files);
    // And the controller stores the final manifest beside the files.
    rakkr_e2e::wait_until(
        Duration::from_secs(60),
        "manifest.json on the controller",
        || copy.join("manifest.json").exists(),
    );
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}

/// Records take `id` (two 1 s segments) and returns its final manifest.
async fn short_take(h: &rakkr_controller::ControllerHandle, id: &str) -> serde_json::Value {
    started(h, take(id, 1)).await;
    audio_taken(h, 25).await;
    stopped(h, id).await
}

fn restart_config(
    ctl_addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ServerConfig>,
    store: &Path,
    takes: Option<PathBuf>,
) -> ControllerConfig {
    let mut cfg = ControllerConfig::new(ctl_addr, tls);
    cfg.store = Some(store.to_owned());
    cfg.heartbeat = Duration::from_millis(500);
    cfg.takes = takes;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_on_the_node_is_refused_and_retention_deletes_only_what_the_controller_holds()
 {
    let tmp = tempfile::tempdir().unwrap();
    let takes = tmp.path().join("controller-takes");
    // First without pulling: the takes stay on the node.
    let Setup {
        feeder: _feeder,
        ctl,
        mut events,
        env,
        pki,
        store,
        ..
    } = recording_setup_with(
        tmp.path(),
        &[("RAKKR_RETENTION_DELETE_RECEIVED_AFTER_HOURS", "0")],
        false,
        |_| {},
    )
    .await;
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    let altered = short_take(&h, "altered").await;
    let clean = short_take(&h, "clean").await;
    let linked = short_take(&h, "linked").await;
    let recordings = tmp.path().join("state/recordings");
    // A closed file changed on the node's disk after it was hashed.
    let victim = altered["files"][0]["file"].as_str().unwrap().to_owned();
    let path = recordings.join("altered").join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    // A listed file replaced by a symlink to a file outside the take.
    let secret = tmp.path().join("secret.flac");
    std::fs::write(&secret, b"not audio; must never leave the node").unwrap();
    let planted = linked["files"][0]["file"].as_str().unwrap().to_owned();
    std::fs::remove_file(recordings.join("linked").join(&planted)).unwrap();
    std::os::unix::fs::symlink(&secret, recordings.join("linked").join(&planted)).unwrap();
    // Peers cannot name anything outside the recordings directory.
    for body in [
        CommandBody::TakeFiles {
            take_id: "..".into(),
            after: String::new(),
        },
        CommandBody::TakeFiles {
            take_id: "clean".into(),
            after: "../../state/trust/node.key".into(),
        },
        CommandBody::Receipt {
            take_id: "../recordings".into(),
            files: vec![],
        },
    ] {
        match run(&h, body.clone()).await {
            Outcome::Failed(f) => assert_eq!(f.code, FailureCode::InvalidArgument, "{body:?}"),
            other => panic!("{body:?} was not refused: {other:?}"),
        }
    }
    // Now a controller that pulls takes (same port and store).
    let addr = ctl.local_addr();
    ctl.shutdown().await;
    let ctl = Controller::start(restart_config(
        addr,
        pki.server_config(),
        &store,
        Some(takes.clone()),
    ))
    .await
    .unwrap();
    let h = ctl.handle();
    // The clean take goes to the controller, then off the node.
    let deleted = wait_logged(
        &h,
        Duration::from_secs(120),
        || {
            format!(
                "no TakeDeleted for clean; agent log:\n{}",
                agent.log().join("\n")
            )
        },
        |log| {
            log.iter().find_map(|b| match b {
                EventBody::TakeDeleted { take_id, files, .. } if take_id == "clean" => Some(*files),
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(deleted as usize, listed(&clean).len());
    assert!(!recordings.join("clean").exists());
    for f in listed(&clean) {
        assert!(
            takes.join(NODE).join("clean").join(&f).exists(),
            "{f} held by the controller"
        );
    }
    // The altered file: refused, named, kept; its take stays.
    let (expected, received) = wait_logged(
        &h,
        Duration::from_secs(120),
        || format!("no ReceiptRefused; agent log:\n{}", agent.log().join("\n")),
        |log| {
            log.iter().find_map(|b| match b {
                EventBody::ReceiptRefused {
                    take_id,
                    file,
                    expected_sha256,
                    received_sha256,
                    ..
                } if take_id == "altered" && *file == victim => {
                    Some((expected_sha256.clone(), received_sha256.clone()))
                }
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(expected, altered["files"][0]["sha256"].as_str().unwrap());
    assert_ne!(expected, received);
    for f in listed(&altered) {
        assert!(
            recordings.join("altered").join(&f).exists(),
            "{f} kept on the node"
        );
    }
    assert!(
        takes
            .join(NODE)
            .join("altered")
            .join(format!("{victim}.mismatch"))
            .exists(),
        "the controller keeps what it got aside"
    );
    // The planted symlink was never read: its take stays, the target never left.
    assert!(recordings.join("linked").exists());
    assert!(!takes.join(NODE).join("linked").join(&planted).exists());
    match run(
        &h,
        CommandBody::ListTakes {
            after: String::new(),
        },
    )
    .await
    {
        Outcome::Done(Reply::Takes { takes: list, .. }) => {
            let ids: Vec<_> = list.iter().map(|t| t.take_id.as_str()).collect();
            assert_eq!(ids, ["altered", "linked"], "clean is gone, the others stay");
            let a = &list[0];
            assert_eq!(a.received + 1, a.files, "all but the altered file received");
        }
        other => panic!("{other:?}"),
    }
    // `takes` on the node says the same.
    let out = rakkr_e2e::agent::run_agent(&["takes"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.lines().any(|l| l.starts_with("altered")
            && l.contains(&format!(
                "received {}/{} files",
                listed(&altered).len() - 1,
                listed(&altered).len()
            ))),
        "{text}"
    );
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}

/// Waits (polling, bounded by `within`) until `h`'s controller received
/// more take bytes than `than`: a transfer is under way.
async fn transferring(h: &rakkr_controller::ControllerHandle, than: u64, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if h.take_bytes_received() > than {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Asks the node (bounded: `within`) until every take it lists has every
/// file received; returns the takes.
async fn until_all_received(
    h: &rakkr_controller::ControllerHandle,
    within: Duration,
) -> Vec<rakkr_protocol::TakeSummary> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(r) = h
            .command(
                NODE,
                CommandBody::ListTakes {
                    after: String::new(),
                },
                crate::T,
            )
            .await
            && let Outcome::Done(Reply::Takes { takes, .. }) = r.outcome
            && !takes.is_empty()
            && takes
                .iter()
                .all(|t| t.status != "recording" && t.received == t.files)
        {
            return takes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every file reached the controller in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_survive_link_cuts_controller_crashes_and_an_agent_kill() {
    use nix::sys::signal::Signal;
    let tmp = tempfile::tempdir().unwrap();
    let takes = tmp.path().join("controller-takes");
    let Setup {
        feeder,
        ctl,
        mut events,
        mut env,
        pki,
        store,
        ..
    } = recording_setup_with(tmp.path(), &[], false, |c| c.takes = Some(takes.clone())).await;
    let addr = ctl.local_addr();
    let proxy = rakkr_e2e::proxy::Proxy::start(addr).await;
    env.insert(
        "RAKKR_CONTROLLER_URL".into(),
        format!("rakkr://{}", proxy.addr),
    );
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let mut ctl = Some(ctl);
    started(&hh(&ctl), take("chaos-1", 1)).await;
    let (mut cuts, mut crashes, mut kills) = (0u64, 0u64, 0u64);
    let mut received_before = 0u64;
    // Bounded: 26 faults, each after a transfer was seen under way.
    for i in 0..26 {
        let seen = hh(&ctl).take_bytes_received();
        assert!(
            transferring(&hh(&ctl), seen, Duration::from_secs(60)).await,
            "no transfer under way before fault {i}; agent log:\n{}",
            agent.log().join("\n")
        );
        if i == 13 {
            // The agent dies mid-transfer (and mid-take); it comes back,
            // recovers the take and goes on recording by itself in a new
            // take that continues it.
            agent.signal(Signal::SIGKILL);
            let _ = agent.terminate(crate::T);
            kills += 1;
            let mut ev = hh(&ctl).subscribe();
            agent = rakkr_e2e::agent::AgentProcess::spawn(&env);
            wait_for(&mut ev, 2 * crate::T, "reconnected", |e| {
                matches!(e, ControllerEvent::Connected { .. }).then_some(())
            })
            .await;
            crate::takes::wait_logged(
                &hh(&ctl),
                2 * crate::T,
                || {
                    format!(
                        "the interrupted take did not go on; agent log:\n{}",
                        agent.log().join("\n")
                    )
                },
                |log| {
                    log.iter()
                        .any(
                            |b| matches!(b, EventBody::TakeStarted(t) if t.take_id == "chaos-1-r2"),
                        )
                        .then_some(())
                },
            )
            .await;
        } else if i % 5 == 4 {
            received_before += hh(&ctl).take_bytes_received();
            ctl.take().unwrap().shutdown().await;
            crashes += 1;
            ctl = Some(
                Controller::start(restart_config(
                    addr,
                    pki.server_config(),
                    &store,
                    Some(takes.clone()),
                ))
                .await
                .expect("the controller restarts on its port"),
            );
        } else {
            cuts += u64::from(proxy.cut() > 0);
        }
    }
    assert_eq!((crashes, kills), (5, 1));
    assert!(cuts >= 18, "{cuts} link cuts landed on a connection");
    // Wait for the link to be back, then end the take.
    let deadline = tokio::time::Instant::now() + 2 * crate::T;
    loop {
        if let Ok(r) = hh(&ctl)
            .command(
                NODE,
                CommandBody::StopTake {
                    take_id: "chaos-1-r2".into(),
                },
                crate::T,
            )
            .await
            && matches!(r.outcome, Outcome::Done(Reply::TakeStopped { .. }))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "StopTake never got through"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The final manifest is over the inline limit here (many files): read
    // the node's own.
    let m2: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("state/recordings/chaos-1-r2/manifest.json")).unwrap(),
    )
    .unwrap();
    let list = until_all_received(&hh(&ctl), Duration::from_secs(180)).await;
    let ids: Vec<_> = list.iter().map(|t| t.take_id.as_str()).collect();
    assert_eq!(ids, ["chaos-1", "chaos-1-r2"]);
    assert_eq!(list[0].status, "recovered", "the take the kill cut short");
    // Every file once on the controller, whole and verified; nothing left over.
    let mut sizes = 0u64;
    for id in ids {
        let node_dir = tmp.path().join("state/recordings").join(id);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(node_dir.join("manifest.json")).unwrap())
                .unwrap();
        let copy = takes.join(NODE).join(id);
        for f in m["files"].as_array().unwrap() {
            let name = f["file"].as_str().unwrap();
            assert_eq!(
                rakkr_e2e::update::sha256_hex(&copy.join(name)),
                f["sha256"].as_str().unwrap(),
                "{id}/{name}"
            );
            sizes += std::fs::metadata(copy.join(name)).unwrap().len();
        }
        let leftovers: Vec<_> = std::fs::read_dir(&copy)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".part") || n.ends_with(".mismatch"))
            .collect();
        assert!(leftovers.is_empty(), "{id}: {leftovers:?}");
        // And the copies hold the console's signal: every jump in it is
        // one the device logged or one the agent reported in a gap (a
        // busy machine may cost audio; none may go missing silently).
        let content = rakkr_e2e::takecheck::check_content_excusing(
            &copy,
            &m,
            &rakkr_e2e::takecheck::Excuses {
                drops: &drops(&feeder),
                gaps: rakkr_e2e::takecheck::manifest_gaps(&m),
                ..Default::default()
            },
        );
        eprintln!(
            "{id}: xruns {}, gaps {}, content {content:?}",
            m["xruns"], m["gaps"]
        );
    }
    assert_eq!(m2["status"], "complete", "{m2}");
    assert_eq!(m2["continues"], "chaos-1", "{m2}");
    // Bytes sent twice: at most the reads in flight at each interruption
    // (plus the small manifests, read whole once per take and pass).
    let sent = received_before + hh(&ctl).take_bytes_received();
    let faults = cuts + crashes + kills;
    let in_flight = rakkr_controller::takes::WINDOW * u64::from(rakkr_protocol::MAX_CHUNK_LEN);
    let manifests = 64 * 1024 * 1024;
    eprintln!(
        "{faults} faults; {sizes} bytes of files, {sent} bytes received ({} repeated)",
        sent.saturating_sub(sizes)
    );
    assert!(
        sent <= sizes + faults * in_flight + manifests,
        "{sent} bytes received for {sizes} bytes of files after {faults} faults"
    );
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    ctl.take().unwrap().shutdown().await;
}

fn hh(ctl: &Option<Controller>) -> rakkr_controller::ControllerHandle {
    ctl.as_ref().expect("a running controller").handle()
}

/// A 4-channel WAV take (small: the test disk is small).
fn small(id: &str) -> CommandBody {
    CommandBody::StartTake(StartTake {
        take_id: id.into(),
        channels: 4,
        format: Some(TakeFormat::Wav),
        segment_seconds: 1,
        pre_roll_ms: 0,
    })
}

/// The receipts a controller holding every closed file of `dir` sends.
fn receipts_for(dir: &Path) -> Vec<rakkr_protocol::FileReceipt> {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| rakkr_protocol::FileReceipt {
            file: f["file"].as_str().unwrap().into(),
            sha256: f["sha256"].as_str().unwrap().into(),
        })
        .filter(|r| !r.sha256.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_frees_only_received_takes_and_never_the_recording_one() {
    if !rakkr_e2e::requires("root (to mount a small tmpfs)", rakkr_e2e::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let _fs = crate::diskfull::Tmpfs::mount(&rec, "24m");
    let rec_s = rec.display().to_string();
    let Setup {
        feeder: _feeder,
        ctl,
        mut events,
        env,
        ..
    } = recording_setup_with(
        tmp.path(),
        &[
            ("RAKKR_STORAGE_RECORDINGS_PATH", rec_s.as_str()),
            ("RAKKR_STORAGE_MIN_FREE_MB", "2"),
            ("RAKKR_STORAGE_WARN_FREE_MB", "2"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "1"),
            ("RAKKR_RETENTION_MIN_FREE_PERCENT", "60"),
        ],
        false,
        |_| {},
    )
    .await;
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    for id in ["received", "unreceived"] {
        started(&h, small(id)).await;
        audio_taken(&h, 25).await;
        stopped(&h, id).await;
    }
    started(&h, small("recording")).await;
    audio_taken(&h, 25).await;
    // Nearly full: another process takes most of what is left.
    let free = nix::sys::statvfs::statvfs(&rec).unwrap();
    let left = free.blocks_available() as u64 * free.fragment_size() as u64;
    std::fs::write(rec.join("filler"), vec![0u8; (left - (3 << 20)) as usize]).unwrap();
    // The controller holds every closed file of two takes, the recording
    // one included (its receipts go through its writer).
    for id in ["received", "recording"] {
        let files = receipts_for(&rec.join(id));
        assert!(!files.is_empty());
        match run(
            &h,
            CommandBody::Receipt {
                take_id: id.into(),
                files: files.clone(),
            },
        )
        .await
        {
            Outcome::Done(Reply::Receipt {
                accepted, refused, ..
            }) => {
                assert_eq!(accepted.len(), files.len(), "{id}: {refused:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    let what = || format!("agent log:\n{}", agent.log().join("\n"));
    wait_logged(&h, Duration::from_secs(60), what, |log| {
        log.iter()
            .any(|b| matches!(b, EventBody::TakeDeleted { take_id, .. } if take_id == "received"))
            .then_some(())
    })
    .await;
    let reason = wait_logged(&h, Duration::from_secs(120), what, |log| {
        log.iter().find_map(|b| match b {
            EventBody::RetentionBlocked { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    })
    .await;
    assert!(reason.contains("retention.min_free_percent"), "{reason}");
    // `status` says so too.
    let st = rakkr_e2e::agent::run_agent(&["status", "--json"], &env);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(
        st["retentionBlocked"]
            .as_str()
            .is_some_and(|r| r.contains("min_free_percent")),
        "{st}"
    );
    assert!(!rec.join("received").exists());
    assert!(rec.join("unreceived/manifest.json").exists());
    assert!(rec.join("recording/manifest.json").exists());
    // The recording take records on, and ends whole.
    std::fs::remove_file(rec.join("filler")).unwrap();
    let m = stopped(&h, "recording").await;
    assert_eq!(m["status"], "complete", "{m}");
    for f in m["files"].as_array().unwrap() {
        assert!(
            rec.join("recording")
                .join(f["file"].as_str().unwrap())
                .exists()
        );
    }
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}
