//! Events cross controller crashes exactly once, in order.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rakkr_controller::store::read_log_file;
use rakkr_e2e::agent::{AgentProcess, agent_env, run_agent};
use rakkr_e2e::init_logging;
use rakkr_protocol::{EventBody, Origin};

use crate::T;

/// The reference controller as a separate process (so it can be killed -9).
fn spawn_controller(listen: &str, certs: &Path, store: &Path) -> (Child, std::net::SocketAddr) {
    let mut child = Command::new(rakkr_e2e::controller_bin())
        .args([
            "serve",
            "--listen",
            listen,
            "--heartbeat-ms",
            "500",
            "--certs",
        ])
        .arg(certs)
        .arg("--store")
        .arg(store)
        .stdin(Stdio::piped()) // kept open: the controller serves until killed
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning rakkr-controller");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("listening line");
    let v: serde_json::Value = serde_json::from_str(&first).expect("listening JSON");
    (
        child,
        v["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("socket addr"),
    )
}

fn annotations(store: &Path, node: &str) -> Vec<(u64, String)> {
    read_log_file(&store.join(format!("{node}.events.jsonl")))
        .expect("reading the controller's event log")
        .into_iter()
        .filter_map(|e| match e.event.body {
            EventBody::Annotated {
                text,
                origin: Origin::Local,
            } => Some((e.event.seq, text)),
            _ => None,
        })
        .collect()
}

#[test]
fn controller_killed_and_restarted_while_events_flow_gets_each_event_exactly_once_in_order() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("pki");
    rakkr_devpki::write_dev_pki(&certs, &["node-ev"]).unwrap();
    let store = tmp.path().join("store");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("trust")).unwrap();
    for f in ["ca.pem", "node.pem", "node.key"] {
        std::fs::copy(
            certs.join("nodes/node-ev").join(f),
            state.join("trust").join(f),
        )
        .unwrap();
    }
    let (mut ctl, addr) = spawn_controller("127.0.0.1:0", &certs, &store);
    let env = agent_env(&state, addr);
    let agent = AgentProcess::spawn(&env);
    agent.wait_log(&["connected to controller"], 1, T);

    const N: usize = 40;
    let mut restarted = false;
    for i in 0..N {
        let out = run_agent(&["annotate", &format!("e{i}")], &env);
        assert!(
            out.status.success(),
            "annotate e{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i == 12 {
            // Crash the controller mid-stream; events keep coming meanwhile.
            ctl.kill().unwrap();
            ctl.wait().unwrap();
        }
        if i == 25 {
            let (c, _) = spawn_controller(&addr.to_string(), &certs, &store);
            ctl = c;
            restarted = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(restarted);
    let deadline = Instant::now() + T;
    let mut got = annotations(&store, "node-ev");
    while got.len() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = annotations(&store, "node-ev");
    }
    let texts: Vec<String> = got.iter().map(|(_, t)| t.clone()).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("e{i}")).collect();
    assert_eq!(texts, expected, "every event exactly once, in order");
    // The stored stream has no duplicate and no gap at all.
    let all = read_log_file(&store.join("node-ev.events.jsonl")).unwrap();
    for w in all.windows(2) {
        assert_eq!(w[1].event.seq, w[0].event.seq + 1, "stream is contiguous");
    }
    assert!(
        agent.count(&["controller link down"]) >= 1,
        "the agent noticed the crash"
    );
    let _ = ctl.kill();
    let _ = ctl.wait();
}
