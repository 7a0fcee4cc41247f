//! Bounds on what a peer sends, and on what the agent sends: a command
//! with a field over its limit is refused naming it and the event stream
//! keeps flowing; refused commands cost no memory or disk; a take manifest
//! over the frame limit reaches the controller in parts.

use std::collections::HashMap;
use std::time::Duration;

use rakkr_controller::ControllerEvent;
use rakkr_e2e::agent::run_agent;
use rakkr_e2e::connected_agent;
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply, StartTake, TakeFormat};

use crate::T;

fn refused(o: &Outcome, field: &str) {
    match o {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument, "{f:?}");
            assert!(
                f.message.starts_with(&format!("{field} is ")),
                "{}",
                f.message
            );
            assert!(f.message.contains("the limit is"), "{}", f.message);
        }
        other => panic!("{field} over its limit was accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_are_refused_and_the_event_stream_keeps_flowing() {
    let mut c = connected_agent("node-big", |_| {}).await;
    let h = &c.handle;
    // The id that made an echoing event 1,048,584 bytes (finding 1).
    let big_id = "i".repeat(1_044_473);
    let r = h
        .command_with_id(
            "node-big",
            &big_id,
            CommandBody::Annotate { text: "x".into() },
            T,
        )
        .await
        .expect("answered");
    assert_eq!(r.id.len(), 128, "the reply carries the id cut to its limit");
    refused(&r.outcome, "command id");
    for _ in 0..3 {
        let r = h
            .command(
                "node-big",
                CommandBody::Mark {
                    label: "l".repeat(400_000),
                },
                T,
            )
            .await
            .unwrap();
        refused(&r.outcome, "label");
    }
    let r = h
        .command(
            "node-big",
            CommandBody::Annotate {
                text: "n".repeat(5_000),
            },
            T,
        )
        .await
        .unwrap();
    refused(&r.outcome, "note");
    // Finding 2: many commands with 1 MB ids neither grow the command log
    // nor take longer each.
    for i in 0..30 {
        let id = format!("{i:04}{}", "x".repeat(1_000_000));
        let r = h
            .command_with_id("node-big", &id, CommandBody::TakeStatus, T)
            .await
            .unwrap();
        refused(&r.outcome, "command id");
    }
    let log = c.state.path().join("commands.log");
    let size = std::fs::metadata(&log).map_or(0, |m| m.len());
    assert!(size < 16 << 10, "the command log stays small: {size} bytes");
    // The stream still flows: a local note is delivered, nothing waits.
    let env = HashMap::from([(
        "RAKKR_STATE_DIR".to_owned(),
        c.state.path().display().to_string(),
    )]);
    let out = run_agent(&["annotate", "after the big ones"], &env);
    assert!(out.status.success(), "{out:?}");
    rakkr_e2e::wait_for(&mut c.events, T, "the note after the big ones", |e| {
        matches!(
            e,
            ControllerEvent::Event { event, .. }
                if matches!(&event.body, EventBody::Annotated { text, .. } if text == "after the big ones")
        )
        .then_some(())
    })
    .await;
    let log = c.agent.log().join("\n");
    assert!(!log.contains("frame too long"), "{log}");
    assert_eq!(c.agent.count(&["controller link down"]), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_over_the_frame_limit_reaches_the_controller_in_parts() {
    let tmp = tempfile::tempdir().unwrap();
    // Long channel names make each file entry about 400 bytes: 32 channels
    // in 1-second segments pass 1 MiB of (compact) manifest after about 115 s.
    // The device reads /dev/zero unpaced, so that takes seconds, not minutes.
    let names: Vec<String> = (1..=32)
        .map(|n| format!("{n:02}-{}", "N".repeat(60)))
        .collect();
    let names = names.join(",");
    let crate::takes::Setup {
        ctl,
        env,
        mut events,
        feeder: _feeder,
        ..
    } = crate::takes::recording_setup(
        tmp.path(),
        &[
            ("X32_INFILE", "/dev/zero"),
            ("RAKKR_CAPTURE_CHANNEL_NAMES", &names),
            ("RAKKR_STORAGE_MIN_FREE_MB", "64"),
            ("RAKKR_STORAGE_WARN_FREE_MB", "64"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "32"),
        ],
        false,
    )
    .await;
    let mut agent = crate::takes::spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    crate::takes::started(
        &h,
        CommandBody::StartTake(StartTake {
            take_id: "long".into(),
            channels: 0,
            format: Some(TakeFormat::Flac),
            segment_seconds: 1,
            pre_roll_ms: 0,
        }),
    )
    .await;
    // Until segment 90 is closed (bounded: 5 minutes).
    crate::takes::wait_logged(
        &h,
        Duration::from_secs(300),
        || agent.log().join("\n"),
        |log| {
            log.iter()
                .any(|b| matches!(b, EventBody::SegmentClosed { segment, .. } if *segment >= 120))
                .then_some(())
        },
    )
    .await;
    let reply = crate::takes::run(
        &h,
        CommandBody::StopTake {
            take_id: "long".into(),
        },
    )
    .await;
    let Outcome::Done(Reply::TakeStopped { manifest_json, .. }) = reply else {
        panic!("{reply:?}");
    };
    assert!(manifest_json.is_empty(), "too large to go inline");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env_take(&env).join("long/manifest.json")).unwrap())
            .unwrap();
    let (parts, stopped) = crate::takes::wait_logged(
        &h,
        Duration::from_secs(60),
        || agent.log().join("\n"),
        |log| {
            let stopped = log.iter().find_map(|b| match b {
                EventBody::TakeStopped {
                    take_id,
                    manifest_json,
                    ..
                } if take_id == "long" => Some(manifest_json.clone()),
                _ => None,
            })?;
            let parts: Vec<(u32, u32, String)> = log
                .iter()
                .filter_map(|b| match b {
                    EventBody::ManifestPart {
                        take_id,
                        part,
                        parts,
                        json,
                    } if take_id == "long" => Some((*part, *parts, json.clone())),
                    _ => None,
                })
                .collect();
            Some((parts, stopped))
        },
    )
    .await;
    assert!(stopped.is_empty());
    let sizes: Vec<usize> = parts.iter().map(|p| p.2.len()).collect();
    assert!(parts.len() >= 6, "{} parts {sizes:?}", parts.len());
    let joined: String = parts
        .iter()
        .enumerate()
        .map(|(i, (part, n, json))| {
            assert_eq!((*part as usize, *n as usize), (i, parts.len()));
            json.as_str()
        })
        .collect();
    assert!(
        joined.len() > 1 << 20,
        "the manifest passed the frame limit: {}",
        joined.len()
    );
    let sent: serde_json::Value = serde_json::from_str(&joined).unwrap();
    for (k, v) in on_disk.as_object().unwrap() {
        assert_eq!(sent.get(k), Some(v), "manifest field {k} differs");
    }
    assert_eq!(sent, on_disk, "the parts are the manifest");
    assert_eq!(
        agent.count(&["controller link down"]),
        0,
        "{}",
        agent.log().join("\n")
    );
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}

fn env_take(env: &HashMap<String, String>) -> std::path::PathBuf {
    std::path::PathBuf::from(&env["RAKKR_STATE_DIR"]).join("recordings")
}
