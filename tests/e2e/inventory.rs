//! `--print-inventory`: the controller's shape, with or without anything set up.

use std::collections::HashMap;

use rakkr_devpki::Validity;
use rakkr_e2e::agent::run_agent;
use rakkr_e2e::shape::validate_node_inventory;
use rakkr_e2e::{TestPki, init_logging};

fn inventory(env: &HashMap<String, String>) -> serde_json::Value {
    let out = run_agent(&["--print-inventory"], env);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inventory is JSON")
}

/// The inventory's audio device `name`; panics if it is not listed.
fn audio_device(inv: &serde_json::Value, name: &str) -> serde_json::Value {
    inv["audioDevices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {inv:#}"))
}

#[test]
fn print_inventory_works_with_nothing_set_up_and_writes_nothing() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state-does-not-exist");
    let env = HashMap::from([("RAKKR_STATE_DIR".to_owned(), state.display().to_string())]);
    let inv = inventory(&env);
    validate_node_inventory(&inv).unwrap_or_else(|e| panic!("shape errors: {e:#?}\n{inv:#}"));
    assert_eq!(inv["status"], "provisioning");
    assert_eq!(inv["trust"]["status"], "absent");
    assert!(
        inv["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("RAKKR_CONTROLLER_URL"))
    );
    for key in [
        "version",
        "gitRevision",
        "target",
        "buildDate",
        "ffmpegVersion",
        "alsaLibVersion",
    ] {
        assert!(
            inv["build"][key].as_str().is_some_and(|s| !s.is_empty()),
            "build.{key}"
        );
    }
    assert!(inv["storage"]["totalBytes"].as_u64().is_some());
    assert!(
        !state.exists(),
        "--print-inventory must not create the state directory"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn print_inventory_reports_trust_and_controller_when_configured() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    pki.node_trust(tmp.path(), "node-inv-2", Validity::days(30));
    let env = HashMap::from([
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().display().to_string(),
        ),
        (
            "RAKKR_CONTROLLER_URL".to_owned(),
            "rakkr://controller.example:7443".to_owned(),
        ),
        ("RAKKR_NODE_ALIAS".to_owned(), "Hall A recorder".to_owned()),
        ("RAKKR_NODE_TAGS".to_owned(), "x32,foh".to_owned()),
    ]);
    let inv = inventory(&env);
    validate_node_inventory(&inv).unwrap();
    assert_eq!(inv["id"], "node-inv-2");
    assert_eq!(inv["idSource"], "certificate");
    assert_eq!(inv["alias"], "Hall A recorder");
    assert_eq!(inv["tags"], serde_json::json!(["x32", "foh"]));
    assert_eq!(inv["status"], "offline");
    assert_eq!(inv["controller"]["address"], "controller.example:7443");
    let t = &inv["trust"];
    assert_eq!(t["status"], "ok");
    assert_eq!(t["certificate"]["subject"], "CN=node-inv-2");
    assert!(t["certificate"]["daysLeft"].as_i64().unwrap() >= 29);
    assert_eq!(t["certificate"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(t["caSha256"].as_array().unwrap().len(), 1);
}

#[test]
fn print_inventory_lists_the_alsa_test_device_with_its_channels() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let infile = tmp.path().join("x32.raw");
    std::fs::write(&infile, vec![0u8; 32 * 4 * 480]).unwrap();
    let alsa = rakkr_e2e::alsa::x32_config_for(tmp.path(), &infile);
    let env = HashMap::from([
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().join("state").display().to_string(),
        ),
        ("ALSA_CONFIG_PATH".to_owned(), alsa),
    ]);
    let inv = inventory(&env);
    validate_node_inventory(&inv).unwrap();
    let dev = &audio_device(&inv, "x32file");
    assert_eq!(dev["channelCounts"], serde_json::json!([32]));
    assert_eq!(dev["console"], true);
    assert!(
        dev["sampleRates"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(48000))
    );
    let iface = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["systemName"] == "x32file")
        .unwrap();
    assert_eq!(iface["id"], "alsa_pcm_x32file");
    assert_eq!(iface["channelCount"], 32);
    assert_eq!(iface["channels"].as_array().unwrap().len(), 32);
    assert_eq!(inv["selectedDevice"]["name"], "x32file");
}

/// A device our own capture holds (one that refuses a second open, like a
/// `hw:` card; here the probe is made to fail as busy by a test-fault
/// build) stays an interface, with what the running capture records —
/// in `--print-inventory` beside the daemon and in the daemon's own
/// inventory — and only while the daemon holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_our_capture_holds_stays_in_the_inventory() {
    use rakkr_controller::ControllerEvent;
    use rakkr_protocol::{CommandBody, Outcome, Reply};
    // Built before the console starts: a slow build must not outlast it
    // (the paced FIFO console ends after its bound, and an agent opening
    // a FIFO nobody writes waits; stop 26's CI timed out so).
    let faults = rakkr_e2e::update::stamped(rakkr_e2e::update::NEW, true);
    let tmp = tempfile::tempdir().unwrap();
    let crate::takes::Setup {
        feeder,
        ctl,
        mut events,
        mut env,
        ..
    } = crate::takes::recording_setup(tmp.path(), &[], false).await;
    env.insert("RAKKR_FAULT".into(), "probe-busy".into());
    let mut agent = rakkr_e2e::agent::AgentProcess::spawn_bin(&faults, &[], &env);
    rakkr_e2e::wait_for(&mut events, crate::T, "Connected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    let h = ctl.handle();
    crate::takes::wait_device(&h, || agent.log().join("\n")).await;

    let interface = |inv: &serde_json::Value| {
        inv["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "alsa_pcm_x32file")
            .cloned()
    };
    let print = |env: &HashMap<String, String>| {
        let out = rakkr_e2e::agent::bin_command(&faults, env)
            .arg("--print-inventory")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Beside the daemon: the probe fails, the running capture says what it is.
    let inv = print(&env);
    validate_node_inventory(&inv).unwrap();
    let dev = audio_device(&inv, "x32file");
    assert!(
        dev["error"].as_str().unwrap().contains("busy"),
        "the probe was refused: {dev}"
    );
    let iface = interface(&inv).unwrap_or_else(|| panic!("the held device is gone: {inv:#}"));
    assert_eq!(iface["channelCount"], 32);
    assert_eq!(iface["sampleRates"], serde_json::json!([48000]));

    // The daemon's own inventory (what the controller gets) lists it too.
    let json = match h
        .command(crate::takes::NODE, CommandBody::Inventory, crate::T)
        .await
        .unwrap()
        .outcome
    {
        Outcome::Done(Reply::Inventory { json }) => json,
        other => panic!("{other:?}"),
    };
    let inv: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        interface(&inv).expect("in the daemon's inventory")["channelCount"],
        32
    );

    // Without the daemon nothing is held: the busy device is not listed.
    let _ = agent.terminate(crate::T);
    let inv = print(&env);
    assert!(interface(&inv).is_none(), "{inv:#}");
    drop(feeder);
    ctl.shutdown().await;
}
