//! rakkr-bridge (the real binary) between real agents and the fake Rakkr
//! controller API (a real HTTP server, `rakkr-fake-api`): a node set up as
//! Rakkr's Ansible role leaves it enrolls through the bridge with its
//! Rakkr token, vouched for by the controller; the bridge keeps the token
//! (0600) and forwards the node's inventory, heartbeats, meter frames
//! (with channel labels) and health edges (`agent.*`) to the controller,
//! and pushes what the controller's node config may set (refusing, and
//! reporting, a capture command); the node's listen stream goes up as
//! one-second WAV chunks.
//! A wrong token, another node's, or any token while the controller
//! cannot answer is refused and nothing is issued.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rakkr_e2e::TestPki;
use rakkr_e2e::agent::AgentProcess;
use rakkr_fake_api::{FakeRakkr, Options};

use crate::T;

/// The bridge's files: the fleet CA (and key) and its server identity.
pub(crate) fn bridge_files(pki: &TestPki, dir: &Path) -> HashMap<String, String> {
    std::fs::create_dir_all(dir).unwrap();
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    HashMap::from([
        (
            "RAKKR_BRIDGE_CA_CERT".into(),
            put("ca.pem", &pki.ca.cert_pem),
        ),
        (
            "RAKKR_BRIDGE_CA_KEY".into(),
            put("ca.key", &pki.ca.key_pem()),
        ),
        (
            "RAKKR_BRIDGE_CERT".into(),
            put("bridge.pem", &pki.controller.cert_pem),
        ),
        (
            "RAKKR_BRIDGE_KEY".into(),
            put("bridge.key", &pki.controller.key_pem),
        ),
    ])
}

/// Starts the bridge binary; returns it and the port agents link to.
pub(crate) fn start_bridge(
    pki: &TestPki,
    tmp: &Path,
    api: &str,
) -> (AgentProcess, u16, PathBuf, std::net::SocketAddr) {
    start_bridge_instance(pki, tmp, api, "bridge")
}

/// [`start_bridge`] for instance `name` (its own files and cache under
/// `tmp/name`); every instance shares the node credentials.
pub(crate) fn start_bridge_instance(
    pki: &TestPki,
    tmp: &Path,
    api: &str,
    name: &str,
) -> (AgentProcess, u16, PathBuf, std::net::SocketAddr) {
    start_bridge_with(pki, tmp, api, name, &[])
}

/// [`start_bridge_instance`] with `extra` variables.
pub(crate) fn start_bridge_with(
    pki: &TestPki,
    tmp: &Path,
    api: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> (AgentProcess, u16, PathBuf, std::net::SocketAddr) {
    let creds = tmp.join("bridge/credentials");
    let mut env = bridge_files(pki, &tmp.join(name));
    env.extend([
        (
            "RAKKR_BRIDGE_CONFIG".to_owned(),
            tmp.join("none.toml").display().to_string(),
        ),
        ("RAKKR_BRIDGE_API_URL".to_owned(), api.to_owned()),
        ("RAKKR_BRIDGE_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "RAKKR_BRIDGE_CREDENTIALS_DIR".to_owned(),
            creds.display().to_string(),
        ),
        ("RAKKR_BRIDGE_HEARTBEAT_SECONDS".to_owned(), "1".to_owned()),
        (
            "RAKKR_BRIDGE_CACHE_DIR".to_owned(),
            tmp.join(name).join("cache").display().to_string(),
        ),
        (
            "RAKKR_BRIDGE_METRICS_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
    ]);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let bridge = AgentProcess::spawn_bin(&rakkr_e2e::bridge_bin(), &[], &env);
    bridge.wait_log(&["rakkr-bridge running"], 1, T);
    let line = bridge
        .log()
        .into_iter()
        .find(|l| l.contains("rakkr-bridge running"))
        .unwrap();
    // "… rakkr-bridge running listen=127.0.0.1:P metrics=Some(127.0.0.1:Q)"
    let addr = |key: &str| -> std::net::SocketAddr {
        let after = line
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no {key} in {line:?}"));
        let text: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        text.parse()
            .unwrap_or_else(|_| panic!("{text:?} in {line:?}"))
    };
    let (port, metrics) = (addr("listen=").port(), addr("metrics=Some("));
    (bridge, port, creds, metrics)
}

/// A node as Rakkr's role leaves it, its bridge at `port`.
pub(crate) fn role_node(
    pki: &TestPki,
    state: &Path,
    port: u16,
    node: &str,
    token: &str,
) -> HashMap<String, String> {
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::write(state.join("trust/ca.pem"), &pki.ca.cert_pem).unwrap();
    HashMap::from([
        ("RAKKR_STATE_DIR".into(), state.display().to_string()),
        ("RAKKR_CONTROLLER_URL".into(), "https://127.0.0.1".into()),
        ("RAKKR_CONTROLLER_BRIDGE_PORT".into(), port.to_string()),
        ("RAKKR_NODE_ID".into(), node.into()),
        ("RAKKR_CONTROLLER_TOKEN".into(), token.into()),
        ("RAKKR_CONTROLLER_BACKOFF_INITIAL_MS".into(), "100".into()),
        ("RAKKR_CONTROLLER_BACKOFF_MAX_MS".into(), "400".into()),
        ("RAKKR_LOG".into(), "info".into()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_node_enrolls_through_the_bridge_and_is_heartbeated_to_rakkr() {
    let fake = FakeRakkr::start(Options::default()).await.unwrap();
    let token = fake.enroll("node_x32_test");
    let other = fake.enroll("node_other");
    let pki = TestPki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (bridge, port, creds, metrics) = start_bridge(&pki, tmp.path(), &fake.url());

    // Refused, nothing issued: an unknown token, another node's, and the
    // right one while the controller cannot answer (401 with /readyz 503).
    for (n, tok, ready, why) in [
        (1, "rakkr_node_unknown", true, "does not know this token"),
        (2, other.as_str(), true, "is not node_x32_test's"),
        (3, token.as_str(), false, "could not check the token"),
    ] {
        fake.set_ready(ready);
        let state = tmp.path().join(format!("refused-{n}"));
        let agent = AgentProcess::spawn(&role_node(&pki, &state, port, "node_x32_test", tok));
        agent.wait_log(&["enrollment failed", why], 1, T);
        assert!(!state.join("trust/node.pem").exists(), "nothing issued");
    }
    fake.set_ready(true);
    assert!(!creds.join("node_x32_test.token").exists(), "nothing kept");

    // The node's own token, on the paced 32-channel console: enrolled,
    // linked, kept, forwarded.
    let state = tmp.path().join("node");
    let fifo = tmp.path().join("x32.fifo");
    // Channel 3 clips from the first frame: a health edge to forward.
    let scenes = rakkr_e2e::alsa::scenes::Scenes::default();
    scenes.at(0, rakkr_e2e::alsa::scenes::Scene::Clip(3));
    let _console =
        rakkr_e2e::alsa::PacedFeeder::start_with(&fifo, 32, 48_000, 512, 3 * T, scenes.signal(32));
    let mut env = role_node(&pki, &state, port, "node_x32_test", &token);
    env.extend([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            rakkr_e2e::alsa::x32_config_for(tmp.path(), &fifo),
        ),
        ("RAKKR_CAPTURE_DEVICE".to_owned(), "x32file".to_owned()),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
    ]);
    // The controller's config for the node: a capacity (pushed) and a
    // capture command (refused, reported).
    fake.with(|s| {
        s.nodes.get_mut("node_x32_test").unwrap().config = serde_json::json!({
            "audioDefaults": {"captureCommand": "arecord -D hw:0", "captureChannels": 32},
            "monitorEnhancement": {"engine": "deepfilternet3", "requested": false},
            "recorderCachePolicies": [],
            "recordingCapacity": {"maxConcurrentRecordings": 2},
        })
    });
    let agent = AgentProcess::spawn(&env);
    agent.wait_log(&["enrolled with the controller"], 1, T);
    agent.wait_log(&["connected to controller"], 1, T);
    let kept = creds.join("node_x32_test.token");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), token);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    rakkr_e2e::wait_until(
        2 * T,
        "heartbeats, a meter frame and the clipping edge at the controller",
        || {
            fake.with(|s| {
                let n = &s.nodes["node_x32_test"];
                n.heartbeats.len() >= 2
                    && !n.meter_frames.is_empty()
                    && n.health_events
                        .iter()
                        .any(|e| e["type"] == "agent.meter.clipping")
            })
        },
    );
    fake.with(|s| {
        let n = &s.nodes["node_x32_test"];
        let hb = &n.heartbeats[0];
        assert!(
            hb["agentVersion"].as_str().is_some_and(|v| !v.is_empty()),
            "{hb}"
        );
        assert!(
            hb["hostname"].as_str().is_some_and(|v| !v.is_empty()),
            "{hb}"
        );
        assert_eq!(hb["status"], "online");
        assert!(n.inventory.is_some(), "inventory forwarded");
        // (The fake takes only frames whose every level has a label.)
        let f = &n.meter_frames[0];
        assert_eq!(f["levels"].as_array().map(Vec::len), Some(32), "{f}");
        assert_eq!(f["nodeId"], "node_x32_test");
        let clip = n
            .health_events
            .iter()
            .find(|e| e["type"] == "agent.meter.clipping")
            .unwrap();
        assert_eq!(
            clip["details"]["channels"],
            serde_json::json!([3]),
            "{clip}"
        );
        assert_eq!(clip["severity"], "warning");
    });
    assert!(bridge.count(&["vouched for by the controller"]) == 1);
    // Live listen: the newest second, 16 kHz mono 16-bit WAV, with its time.
    rakkr_e2e::wait_until(2 * T, "a listen chunk at the controller", || {
        fake.with(|s| s.nodes["node_x32_test"].listen.is_some())
    });
    fake.with(|s| {
        let (at, ms, wav) = s.nodes["node_x32_test"].listen.clone().unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);
        assert_eq!(wav.len() as u64, 44 + ms * 32, "{ms} ms");
        assert!((100..=1_000).contains(&ms), "{ms} ms");
        assert!(at.starts_with("20") && at.ends_with('Z'), "{at}");
    });
    // The config: what the agent allows is in force, pushed; the capture
    // command is refused and said so once.
    agent.wait_log(
        &["pushed configuration in force", "capture.max_takes"],
        1,
        T,
    );
    let out = rakkr_e2e::agent::run_agent(&["status", "--json"], &env);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let setting = |key: &str| {
        status["config"]["settings"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["key"] == key).cloned())
            .unwrap_or_else(|| panic!("{key} not in {status}"))
    };
    assert_eq!(setting("capture.max_takes")["value"], "2", "{status}");
    assert!(
        setting("capture.max_takes")["origin"]
            .to_string()
            .contains("ushed"),
        "{status}"
    );
    fake.with(|s| {
        let refused: Vec<_> = s.nodes["node_x32_test"]
            .health_events
            .iter()
            .filter(|e| e["type"] == "agent.config.refused")
            .collect();
        assert_eq!(refused.len(), 1, "once: {refused:?}");
        assert_eq!(
            refused[0]["details"]["keys"],
            serde_json::json!(["audioDefaults.captureCommand"])
        );
    });
    // What an operator's Prometheus scrapes.
    let text = get(metrics, "/metrics").await;
    for line in [
        "rakkr_bridge_nodes_linked 1",
        "rakkr_bridge_enrollments_total{outcome=\"ok\"} 1",
        "rakkr_bridge_enrollments_total{outcome=\"failed\"} 3",
        "rakkr_bridge_config_pushes_total{outcome=\"ok\"} 1",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(
        text.contains("rakkr_bridge_heartbeats_total{outcome=\"ok\"}"),
        "{text}"
    );
    assert!(get(metrics, "/healthz").await.contains("\"nodesLinked\":1"));
    drop(agent);
    fake.with(|s| assert!(s.nodes["node_other"].heartbeats.is_empty()));
}

/// The body of `GET path` from the bridge's HTTP side.
pub(crate) async fn get(at: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut out))
        .await
        .expect("the bridge answers")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// A node's inventory is posted again when it changes: the bridge asks
/// the node after it reports its device lost (or back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_inventory_is_posted_again_after_a_device_event() {
    use futures_util::{SinkExt, StreamExt};
    use rakkr_protocol::{AgentMsg, Event, EventBody, Hello, Resume};
    let fake = FakeRakkr::start(Options::default()).await.unwrap();
    let token = fake.enroll("node_inv");
    let pki = TestPki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (_bridge, port, creds, _) = start_bridge(&pki, tmp.path(), &fake.url());
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("node_inv.token"), &token).unwrap();
    let inventory_named = |name: &str, first: &str| {
        serde_json::json!({"agentVersion": "2026.12.06-1", "hostname": "inv", "interfaces": [
            {"alias": name, "backend": "alsa", "channelCount": 2, "id": format!("alsa_{name}"),
             "channels": [{"index": 1, "alias": first}, {"index": 2, "alias": "Input 2"}],
             "sampleRates": [48000], "systemName": name, "systemRef": format!("hw:CARD={name},DEV=0")}]})
        .to_string()
    };
    let inventory = |name: &str| inventory_named(name, "Input 1");
    let leaf = pki
        .ca
        .issue_node("node_inv", rakkr_devpki::Validity::days(1))
        .unwrap();
    let id = rakkr_protocol::tls::Identity::from_pem(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        "node",
    )
    .unwrap();
    let cfg =
        rakkr_protocol::tls::client_config(std::slice::from_ref(&pki.ca.cert_der), id).unwrap();
    let endpoint = rakkr_protocol::client::Endpoint {
        address: format!("127.0.0.1:{port}"),
        server_name: rakkr_protocol::tls::server_name("127.0.0.1").unwrap(),
    };
    let hello = Hello {
        versions: rakkr_protocol::version::SUPPORTED,
        agent_version: "test".into(),
        build_target: "test".into(),
        node_id: "node_inv".into(),
        inventory_json: inventory("X32"),
        resume: Resume {
            stream_id: 7,
            next_seq: 1,
        },
    };
    let (framed, _) = rakkr_protocol::client::connect(&endpoint, cfg, hello, T)
        .await
        .unwrap();
    let (mut tx, mut rx) = framed.split();
    let posted = |name: &str| {
        fake.with(|s| {
            s.nodes["node_inv"]
                .inventory
                .as_ref()
                .is_some_and(|i| i.to_string().contains(&format!("hw:CARD={name}")))
        })
    };
    // The node: the console is unplugged and a Wing comes in its place.
    tx.send(AgentMsg::Event(Event {
        seq: 1,
        at_ms: 1,
        body: EventBody::DeviceLost {
            device: "hw:CARD=X32,DEV=0".into(),
            take_id: String::new(),
            at_sample: 0,
            reason: "unplugged".into(),
        },
    }))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + 2 * T;
    let mut first = false;
    // Bounded: until the Wing is at the controller, or the deadline.
    while !posted("Wing") {
        assert!(
            std::time::Instant::now() < deadline,
            "the new inventory never came"
        );
        first |= posted("X32");
        answer_once(&mut tx, &mut rx, &inventory("Wing")).await;
    }
    assert!(first, "the Hello's inventory was posted first");

    // The console renames channel 1: the bridge asks again, the alias
    // reaches the controller, and the meters are labelled with it.
    tx.send(AgentMsg::Event(Event {
        seq: 2,
        at_ms: 2,
        body: EventBody::Console(Box::new(rakkr_protocol::ConsoleEvent::Renamed {
            console_channel: 1,
            device_channels: vec![1],
            from: "Input 1".into(),
            to: "Pastor".into(),
            takes: Vec::new(),
        })),
    }))
    .await
    .unwrap();
    let renamed = || {
        fake.with(|s| {
            s.nodes["node_inv"]
                .inventory
                .as_ref()
                .is_some_and(|i| i.to_string().contains("Pastor"))
        })
    };
    let labelled = || {
        fake.with(|s| {
            s.nodes["node_inv"]
                .meter_frames
                .iter()
                .any(|f| f.to_string().contains("\"label\":\"Pastor\""))
        })
    };
    let deadline = std::time::Instant::now() + 2 * T;
    // Bounded: until a meter frame is labelled "Pastor", or the deadline.
    while !(renamed() && labelled()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renamed channel never labelled the meters (inventory renamed: {})",
            renamed()
        );
        tx.send(AgentMsg::Meter(rakkr_protocol::MeterFrame {
            captured_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            interface_id: "alsa_Wing".into(),
            levels: vec![rakkr_protocol::Level {
                channel_index: 1,
                peak_dbfs: -6.0,
                rms_dbfs: -12.0,
                clipping: false,
                quality: None,
            }],
        }))
        .await
        .unwrap();
        answer_once(&mut tx, &mut rx, &inventory_named("Wing", "Pastor")).await;
    }
}

/// Waits a little (the bridge may have nothing to say) for one message
/// from the bridge and answers it as a node whose inventory is `inventory`.
async fn answer_once<S, R, E>(tx: &mut S, rx: &mut R, inventory: &str)
where
    S: futures_util::Sink<rakkr_protocol::AgentMsg> + Unpin,
    S::Error: std::fmt::Debug,
    R: futures_util::Stream<Item = Result<rakkr_protocol::ControllerMsg, E>> + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use rakkr_protocol::{AgentMsg, CommandBody, CommandResult, ControllerMsg, Outcome, Reply};
    let msg = match tokio::time::timeout(std::time::Duration::from_millis(200), rx.next()).await {
        Err(_) => return,
        Ok(Some(Ok(msg))) => msg,
        Ok(_) => panic!("the bridge closed the link"),
    };
    if let ControllerMsg::Command(c) = msg {
        let outcome = match c.body {
            CommandBody::Inventory => Outcome::Done(Reply::Inventory {
                json: inventory.to_owned(),
            }),
            CommandBody::ListTakes { .. } => Outcome::Done(Reply::Takes {
                takes: Vec::new(),
                more: false,
            }),
            _ => Outcome::Failed(rakkr_protocol::Failure {
                code: rakkr_protocol::FailureCode::Unsupported,
                message: "test".into(),
            }),
        };
        tx.send(AgentMsg::Result(CommandResult { id: c.id, outcome }))
            .await
            .unwrap();
    }
}
