//! What a hostile local user or a careless setup could do to a node: the
//! control socket is private from its first moment and refuses other
//! users; state and trust directories and the node key are made private;
//! trust is never written through a planted symbolic link (as root); a
//! server that does not speak rakkr-agent/1 (ALPN) is not a controller.
//!
//! Needs root (it runs a client as uid 65534 with setpriv, and chowns).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, run_agent};

use crate::T;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn the_control_socket_is_private_and_refuses_other_users() {
    if !rakkr_e2e::requires("root (to act as another user)", rakkr_e2e::is_root()) {
        return;
    }
    rakkr_e2e::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o755);
    let env = HashMap::from([
        ("RAKKR_STATE_DIR".to_owned(), state.display().to_string()),
        (
            "RAKKR_CONTROLLER_URL".to_owned(),
            "rakkr://127.0.0.1:1".to_owned(),
        ),
        ("RAKKR_LOG".to_owned(), "info".to_owned()),
    ]);
    // As the issue found it: umask 000 and a 0755 state directory.
    let agent_bin = rakkr_e2e::agent_bin();
    let mut agent = AgentProcess::spawn_bin(
        Path::new("/bin/sh"),
        &[
            "-c",
            "umask 000; exec \"$0\" run",
            agent_bin.to_str().unwrap(),
        ],
        &env,
    );
    agent.wait_log(&["agent started"], 1, T);
    assert_eq!(mode(&state), 0o700, "the state directory is made private");
    assert_eq!(
        mode(&state.join("agent.sock")),
        0o600,
        "private from the start"
    );
    assert!(
        agent.count(&["was open to other users"]) >= 1,
        "and the log says so"
    );
    // Even when someone opens it up again, another user is refused.
    chmod(&state, 0o755);
    chmod(&state.join("agent.sock"), 0o666);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&agent_bin)
        .args(["annotate", "from nobody"])
        .envs(&env)
        .output()
        .expect("running setpriv");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.wait_log(&["control connection refused", "uid 65534"], 1, T);
    assert_eq!(agent.count(&["from nobody"]), 0, "nothing was annotated");
    // Root (the agent's own user here) still gets in.
    let ok = run_agent(&["annotate", "from root"], &env);
    assert!(ok.status.success(), "{ok:?}");
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
}

#[test]
fn trust_install_as_root_never_writes_through_a_planted_link() {
    if !rakkr_e2e::requires("root (to act as another user)", rakkr_e2e::is_root()) {
        return;
    }
    rakkr_e2e::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    // A root-owned directory the service user points trust/ at.
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"root's").unwrap();
    chmod(&victim, 0o755);
    let pki = rakkr_e2e::TestPki::new();
    let (ca, cert, key) = pki.identity_files(&tmp.path().join("in"), "node-l");
    let env = HashMap::from([("RAKKR_STATE_DIR".to_owned(), state.display().to_string())]);
    let install = || rakkr_e2e::agent::trust_install(&ca, &cert, &key, &env);
    let untouched = |what: &str| {
        assert_eq!(mode(&victim), 0o755, "{what}: the victim's mode");
        let names: Vec<_> = std::fs::read_dir(&victim)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["keep"], "{what}: nothing written into the victim");
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);
    };
    // trust/ itself is the link.
    std::os::unix::fs::symlink(&victim, state.join("trust")).unwrap();
    let out = install();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{out:?}"
    );
    untouched("trust/ linked");
    // trust/ is real, trust/generations is the link.
    std::fs::remove_file(state.join("trust")).unwrap();
    std::fs::create_dir(state.join("trust")).unwrap();
    std::os::unix::fs::chown(state.join("trust"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink(&victim, state.join("trust/generations")).unwrap();
    let out = install();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{out:?}"
    );
    untouched("trust/generations linked");
    // Without links it installs, and what it wrote belongs to the service user.
    std::fs::remove_file(state.join("trust/generations")).unwrap();
    let out = install();
    assert!(out.status.success(), "{out:?}");
    let current = std::fs::canonicalize(state.join("trust/current")).unwrap();
    for f in ["ca.pem", "node.pem", "node.key"] {
        assert_eq!(
            std::fs::metadata(current.join(f)).unwrap().uid(),
            65534,
            "{f}"
        );
    }
    assert_eq!(mode(&current.join("node.key")), 0o600);
    untouched("a clean install");
}

#[test]
fn a_node_key_readable_by_others_is_made_private_and_said() {
    rakkr_e2e::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let pki = rakkr_e2e::TestPki::new();
    let trust = pki.node_trust(&state, "node-k", Validity::days(30));
    let key = trust.join("node.key");
    chmod(&key, 0o644);
    let env = HashMap::from([
        ("RAKKR_STATE_DIR".to_owned(), state.display().to_string()),
        (
            "RAKKR_CONTROLLER_URL".to_owned(),
            "rakkr://127.0.0.1:1".to_owned(),
        ),
    ]);
    let out = run_agent(&["check"], &env);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("readable by other users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&key), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_speak_rakkr_agent_1_is_not_a_controller() {
    rakkr_e2e::init_logging();
    let pki = rakkr_e2e::TestPki::new();
    let mut cfg = (*pki.server_config()).clone();
    cfg.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // Bounded: the agent retries a few times within the test.
        for _ in 0..20 {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let a = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = a.accept(tcp).await {
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
                    )
                    .await;
                }
            });
        }
    });
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-a", Validity::days(30));
    let mut agent = AgentProcess::spawn(&rakkr_e2e::agent::agent_env(state.path(), addr));
    agent.wait_log(&["did not agree to the rakkr-agent/1 protocol"], 1, T);
    assert_eq!(agent.count(&["connected to controller"]), 0);
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_welcomes_and_drops_the_link_is_not_hammered() {
    rakkr_e2e::init_logging();
    let pki = rakkr_e2e::TestPki::new();
    let ctl = rakkr_e2e::start_controller(pki.server_config(), |_| {}).await;
    let h = ctl.handle();
    let mut events = h.subscribe();
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-flap", Validity::days(30));
    let mut env = rakkr_e2e::agent::agent_env(state.path(), ctl.local_addr());
    env.insert("RAKKR_CONTROLLER_BACKOFF_INITIAL_MS".into(), "200".into());
    env.insert("RAKKR_CONTROLLER_BACKOFF_MAX_MS".into(), "3200".into());
    let mut agent = AgentProcess::spawn(&env);
    // Every session is dropped as soon as it is welcomed. Before, the
    // backoff started over after each welcome: every retry was drawn below
    // the initial cap (200 ms). Now the caps grow (0.2, 0.4, 0.8, 1.6,
    // 3.2 s). Delays are jittered down to 0.1 s, so no count of sessions in
    // a time window can tell the two apart; the delays the agent chose can.
    const SESSIONS: usize = 6;
    let mut sessions = 0;
    while sessions < SESSIONS {
        let e = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("the agent reconnects")
            .expect("controller events");
        if let rakkr_controller::ControllerEvent::Connected { .. } = e {
            sessions += 1;
            let _ = h.disconnect("node-flap").await;
        }
    }
    agent.wait_log(&["controller link down", "retry_in"], SESSIONS, T);
    let delays: Vec<Duration> = agent
        .log()
        .iter()
        .filter(|l| l.contains("controller link down"))
        .filter_map(|l| l.split("retry_in=").nth(1))
        .filter_map(|v| parse_debug_duration(v.split_whitespace().next().unwrap_or_default()))
        .collect();
    assert!(delays.len() >= SESSIONS, "retry delays logged: {delays:?}");
    // With growing caps the chance that five retries all stay under the
    // first cap is about 3e-6; with a reset after each welcome it is 1.
    assert!(
        delays.iter().any(|d| *d > Duration::from_millis(200)),
        "every retry was drawn below the initial cap: the backoff was reset by each welcome ({delays:?})"
    );
    assert!(agent.terminate(T).is_some_and(|s| s.success()));
    ctl.shutdown().await;
}

/// A `Duration`'s Debug text (`150.2ms`, `1.5s`, `800µs`).
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| s.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    let secs = match unit.trim_end_matches([',', ' ']) {
        "s" => v,
        "ms" => v / 1e3,
        "µs" | "us" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}
