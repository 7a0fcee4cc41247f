//! Configuration pushed by the controller (`Configure`), end to end with
//! the real agent daemon on the paced FIFO console: the capture changes
//! live (at once between takes, after the take while one records, at
//! once when forced), a forbidden key refuses the whole document naming
//! it, the document survives a restart, the operator's file and
//! environment keep precedence, and `check` and `status --json` say where
//! each value comes from.

use std::collections::HashMap;

use rakkr_e2e::agent::run_agent;
use rakkr_protocol::{CommandBody, ConfigApplied, ConfigPush, FailureCode, Outcome, Reopen, Reply};

use crate::takes::{Setup, recording_setup, run, spawn_recording, start, started, stopped};

fn push(version: u64, doc: serde_json::Value, force: bool) -> CommandBody {
    CommandBody::Configure(ConfigPush {
        version,
        document: doc.to_string(),
        force,
    })
}

async fn configured(h: &rakkr_controller::ControllerHandle, body: CommandBody) -> ConfigApplied {
    match run(h, body).await {
        Outcome::Done(Reply::Configured(a)) => a,
        other => panic!("the configuration was not applied: {other:?}"),
    }
}

async fn refused(h: &rakkr_controller::ControllerHandle, body: CommandBody) -> String {
    match run(h, body).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument, "{}", f.message);
            f.message
        }
        other => panic!("the configuration was not refused: {other:?}"),
    }
}

/// `status --json`'s setting `key`: (value, origin as JSON).
fn setting(env: &HashMap<String, String>, key: &str) -> (String, serde_json::Value) {
    let out = run_agent(&["status", "--json"], env);
    assert!(out.status.success(), "status: {out:?}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let found = s["config"]["settings"]
        .as_array()
        .expect("config settings in status")
        .iter()
        .find(|x| x["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in status: {s:#}"))
        .clone();
    (
        found["value"].as_str().unwrap().to_owned(),
        found["origin"].clone(),
    )
}

/// Waits until a take can start with `channels` channels (the device
/// reopens in the background), then returns its info.
async fn take_with(
    h: &rakkr_controller::ControllerHandle,
    take_id: &str,
    channels: u16,
) -> rakkr_protocol::TakeInfo {
    let deadline = tokio::time::Instant::now() + crate::T;
    loop {
        match run(h, start(take_id)).await {
            Outcome::Done(Reply::Take { take, .. }) if take.channels == channels => return take,
            Outcome::Done(Reply::Take { take, .. }) => {
                let _ = stopped(h, take_id).await;
                panic!(
                    "a take started with {} channels, not {channels}",
                    take.channels
                );
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no take with {channels} channels: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_settings_change_the_capture_live_survive_a_restart_and_lose_to_the_operator() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        feeder,
        ctl,
        mut events,
        mut env,
        ..
    } = recording_setup(tmp.path(), &[], false).await;
    // The device is left to the controller (at first `auto`: the X32);
    // the operator's file sets the segment length and the environment
    // the period: a push changes neither.
    env.remove("RAKKR_CAPTURE_DEVICE");
    let file = tmp.path().join("agent.toml");
    std::fs::write(&file, "[capture]\nsegment_seconds = 5\n").unwrap();
    env.insert("RAKKR_CONFIG".into(), file.display().to_string());
    let mut agent = spawn_recording(&ctl, &mut events, &env).await;
    let h = ctl.handle();
    let take = started(&h, start("before")).await;
    assert_eq!((take.device.as_str(), take.channels), ("x32file", 32));
    let _ = stopped(&h, "before").await;

    // Between takes: in force at once, the device reopened.
    let a = configured(
        &h,
        push(
            1,
            serde_json::json!({
                "capture": {"device": "x8file", "channels": 8, "meter_hz": 20, "segment_seconds": 1, "buffer_frames": 1024},
                "health": {"clip_dbfs": -3.0},
                "transfer": {"max_bytes_per_second": 5_000_000}
            }),
            false,
        ),
    )
    .await;
    assert_eq!(a.version, 1);
    assert_eq!(a.reopen, Reopen::Reopened);
    assert_eq!(
        a.changed,
        [
            "capture.device",
            "capture.channels",
            "capture.meter_hz",
            "transfer.max_bytes_per_second",
            "health.clip_dbfs"
        ]
    );
    assert_eq!(
        a.overridden,
        ["capture.buffer_frames", "capture.segment_seconds"]
    );
    let take = take_with(&h, "eight", 8).await;
    assert_eq!(take.device, "x8file");
    let m = stopped(&h, "eight").await;
    assert_eq!(m["channels"], 8, "{m}");
    assert_eq!(
        setting(&env, "capture.device"),
        (
            "x8file".into(),
            serde_json::json!({"from": "pushed", "version": 1})
        )
    );
    assert_eq!(
        setting(&env, "capture.segment_seconds"),
        ("5".into(), serde_json::json!({"from": "file"}))
    );
    assert_eq!(
        setting(&env, "capture.buffer_frames"),
        (
            "512".into(),
            serde_json::json!({"from": "env", "var": "RAKKR_CAPTURE_BUFFER_FRAMES"})
        )
    );
    assert_eq!(setting(&env, "health.clip_dbfs").0, "-3");
    assert_eq!(setting(&env, "capture.meter_hz").0, "20");

    // While a take records: it keeps its device; the device changes
    // when it ends, and the take is whole.
    let during = started(&h, start("during")).await;
    let a = configured(
        &h,
        push(
            2,
            serde_json::json!({"capture": {"device": "x32file"}}),
            false,
        ),
    )
    .await;
    assert_eq!(
        a.reopen,
        Reopen::AfterTake {
            take_id: "during".into()
        }
    );
    let m = stopped(&h, "during").await;
    assert_eq!(
        (m["channels"].as_u64(), m["status"].as_str()),
        (Some(8), Some("complete"))
    );
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    let thirty_two = take_with(&h, "thirty-two", 32).await;
    assert_eq!(thirty_two.device, "x32file");
    assert_ne!(during.dir, thirty_two.dir);

    // Forced: the take ends cleanly first, saying why.
    let a = configured(
        &h,
        push(
            3,
            serde_json::json!({"capture": {"device": "x8file", "channels": 8}}),
            true,
        ),
    )
    .await;
    assert_eq!(a.reopen, Reopen::Reopened);
    let ended = || {
        crate::takes::logged(&h).into_iter().find_map(|b| match b {
            rakkr_protocol::EventBody::TakeStopped {
                take_id,
                status,
                reason,
                ..
            } if take_id == "thirty-two" => Some((status, reason)),
            _ => None,
        })
    };
    let deadline = tokio::time::Instant::now() + crate::T;
    let (status, reason) = loop {
        if let Some(f) = ended() {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the forced take never stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, "stopped");
    assert!(reason.contains("capture settings"), "{reason}");
    let forced = rakkr_e2e::takecheck::manifest(std::path::Path::new(&thirty_two.dir));
    rakkr_e2e::takecheck::check_content(
        std::path::Path::new(&thirty_two.dir),
        &forced,
        &crate::takes::drops(&feeder),
    );
    take_with(&h, "eight-again", 8).await;
    let _ = stopped(&h, "eight-again").await;

    // A forbidden key refuses the whole document, naming it; so do an
    // unknown key, a device name that could carry a program and a stale
    // version.
    for (version, doc, says) in [
        (
            4,
            serde_json::json!({"capture": {"channels": 4}, "controller": {"url": "rakkr://elsewhere:7443"}}),
            "controller.url cannot be set",
        ),
        (
            4,
            serde_json::json!({"capture": {"command": "arecord | nc"}}),
            "capture.command is not a setting",
        ),
        (
            4,
            serde_json::json!({"capture": {"device": "file:'|sh'"}}),
            "not a device name",
        ),
        (2, serde_json::json!({}), "older than the one in force (3)"),
    ] {
        let msg = refused(&h, push(version, doc, false)).await;
        assert!(msg.contains(says), "{msg}");
    }
    assert_eq!(
        setting(&env, "capture.device"),
        (
            "x8file".into(),
            serde_json::json!({"from": "pushed", "version": 3})
        ),
        "nothing changed"
    );

    // A restart keeps the document in force.
    assert!(agent.terminate(crate::T).is_some_and(|s| s.success()));
    let _agent = spawn_recording(&ctl, &mut events, &env).await;
    assert_eq!(
        setting(&env, "capture.device"),
        (
            "x8file".into(),
            serde_json::json!({"from": "pushed", "version": 3})
        )
    );
    take_with(&h, "after-restart", 8).await;
    let _ = stopped(&h, "after-restart").await;
    // `check` shows the same, key by key.
    let out = run_agent(&["check", "--config-only"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("pushed configuration: version 3 in force"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("capture.device")
            && l.contains("= x8file")
            && l.contains("pushed by the controller (version 3)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("capture.segment_seconds") && l.contains("operator file")),
        "{text}"
    );
    drop(feeder);
    ctl.shutdown().await;
}
