//! `trust enroll`: a node's first identity from a one-time token, against
//! the reference controller's token registry and CA.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rakkr_controller::ControllerEvent;
use rakkr_controller::renewal::Renewal;
use rakkr_controller::tls::ServerOptions;
use rakkr_e2e::agent::{AgentProcess, agent_env, run_agent};
use rakkr_e2e::{TestPki, start_controller, wait_for};
use sha2::{Digest, Sha256};

use crate::T;

fn enroll(
    state: &Path,
    addr: std::net::SocketAddr,
    ca: &Path,
    extra: &[(&str, String)],
    args: &[&str],
) -> std::process::Output {
    let mut env: HashMap<String, String> =
        HashMap::from([("RAKKR_STATE_DIR".into(), state.display().to_string())]);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let url = format!("rakkr://{addr}");
    let ca = ca.display().to_string();
    let mut all = vec![
        "trust",
        "enroll",
        "--controller",
        &url,
        "--ca",
        &ca,
        "--node-id",
        "node-new",
    ];
    all.extend_from_slice(args);
    run_agent(&all, &env)
}

/// A controller whose TLS lets certificate-less clients enroll, with a CA
/// that signs for a day.
async fn enrolling_controller() -> (TestPki, rakkr_controller::Controller) {
    enrolling_controller_with(|_| {}).await
}

/// The same, its configuration adjusted by `tweak`.
async fn enrolling_controller_with(
    tweak: impl FnOnce(&mut rakkr_controller::ControllerConfig),
) -> (TestPki, rakkr_controller::Controller) {
    rakkr_e2e::init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(
        pki.server_config_opts(ServerOptions {
            enrollment: true,
            ..Default::default()
        }),
        tweak,
    )
    .await;
    ctl.handle()
        .set_renewal(Some(std::sync::Arc::new(Renewal::new(
            pki.ca.clone(),
            Duration::from_secs(86_400),
        ))));
    (pki, ctl)
}

/// A node with no identity yet: the fleet CA bundle in its trust
/// directory, `node` as its id, linking to `addr`.
fn fresh_node(
    pki: &TestPki,
    state: &Path,
    addr: std::net::SocketAddr,
    node: &str,
) -> HashMap<String, String> {
    std::fs::create_dir_all(state.join("trust")).unwrap();
    std::fs::write(state.join("trust/ca.pem"), &pki.ca.cert_pem).unwrap();
    let mut env = agent_env(state, addr);
    env.insert("RAKKR_NODE_ID".into(), node.into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_from_an_empty_state_directory_with_a_one_time_token() {
    let (pki, ctl) = enrolling_controller().await;
    let h = ctl.handle();
    h.add_enroll_token("tok-good", "node-new", Duration::from_secs(3600));
    h.add_enroll_token("tok-expired", "node-new", Duration::ZERO);
    h.add_enroll_token("tok-other", "node-other", Duration::from_secs(3600));
    h.add_enroll_token("tok-cred", "node-new", Duration::from_secs(3600));
    let mut events = h.subscribe();
    let addr = ctl.local_addr();
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("fleet-ca.pem");
    std::fs::write(&ca, &pki.ca.cert_pem).unwrap();
    let token_file = |t: &str| {
        let p = tmp.path().join(format!("{t}.token"));
        std::fs::write(&p, format!("{t}\n")).unwrap();
        p.display().to_string()
    };

    // Refusals: wrong, expired, another node's; nothing written, exit 26.
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    for (token, needle) in [
        ("tok-wrong", "unknown"),
        ("tok-expired", "expired"),
        ("tok-other", "node-other"),
    ] {
        let st = state.clone();
        let (ca, f) = (ca.clone(), token_file(token));
        let out =
            tokio::task::spawn_blocking(move || enroll(&st, addr, &ca, &[], &["--token-file", &f]))
                .await
                .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(26), "{token}: {err}");
        assert!(err.contains(needle), "{token}: {err}");
        assert!(
            !state.join("trust").exists(),
            "{token}: a refusal writes nothing"
        );
    }
    // No token at all: a usage problem (config), not a refusal.
    let st = state.clone();
    let ca2 = ca.clone();
    let out = tokio::task::spawn_blocking(move || enroll(&st, addr, &ca2, &[], &[]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // The good token from the environment.
    let st = state.clone();
    let ca2 = ca.clone();
    let out = tokio::task::spawn_blocking(move || {
        enroll(
            &st,
            addr,
            &ca2,
            &[("RAKKR_ENROLL_TOKEN", "tok-good".into())],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let issued = wait_for(&mut events, T, "Enrolled", |e| match e {
        ControllerEvent::Enrolled { node, sha256 } if node == "node-new" => Some(sha256.clone()),
        _ => None,
    })
    .await;
    let pem = std::fs::read(state.join("trust/node.pem")).unwrap();
    let der = rakkr_protocol::tls::certs_from_pem(&pem, "node.pem").unwrap();
    assert_eq!(hex::encode(Sha256::digest(der[0].as_ref())), issued);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join("trust")), 0o700);
    assert_eq!(mode(&state.join("trust/node.key")), 0o600);

    // The node connects with it.
    let _agent = AgentProcess::spawn(&agent_env(&state, addr));
    let presented = wait_for(&mut events, T, "Connected", |e| match e {
        ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
        _ => None,
    })
    .await;
    assert_eq!(presented, issued);

    // The token is spent: reusing it on another node's empty state is refused.
    let other = tmp.path().join("state-2");
    std::fs::create_dir_all(&other).unwrap();
    let (st, ca2, f) = (other.clone(), ca.clone(), token_file("tok-good"));
    let out =
        tokio::task::spawn_blocking(move || enroll(&st, addr, &ca2, &[], &["--token-file", &f]))
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(26), "{out:?}");
    assert!(!other.join("trust").exists());

    // From a systemd credential.
    let creds = tmp.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("rakkr-enroll-token"), "tok-cred").unwrap();
    let (st, ca2) = (other.clone(), ca.clone());
    let out = tokio::task::spawn_blocking(move || {
        enroll(
            &st,
            addr,
            &ca2,
            &[("CREDENTIALS_DIRECTORY", creds.display().to_string())],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(other.join("trust/node.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_enrolls_by_itself_with_a_systemd_credential() {
    let (pki, ctl) = enrolling_controller().await;
    let h = ctl.handle();
    h.add_enroll_token("tok-svc", "node-svc", Duration::from_secs(3600));
    let mut events = h.subscribe();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // What provisioning leaves: the fleet CA bundle, and the token as a
    // credential (LoadCredential=rakkr-enroll-token in the unit).
    let mut env = fresh_node(&pki, &state, ctl.local_addr(), "node-svc");
    let creds = tmp.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("rakkr-enroll-token"), "tok-svc\n").unwrap();
    env.insert("CREDENTIALS_DIRECTORY".into(), creds.display().to_string());
    let agent = AgentProcess::spawn(&env);
    let issued = wait_for(&mut events, T, "Enrolled", |e| match e {
        ControllerEvent::Enrolled { node, sha256 } if node == "node-svc" => Some(sha256.clone()),
        _ => None,
    })
    .await;
    let presented = wait_for(&mut events, T, "Connected", |e| match e {
        ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
        _ => None,
    })
    .await;
    assert_eq!(presented, issued);
    assert!(agent.count(&["enrolled with the controller"]) >= 1);
}

/// A node as Rakkr's Ansible role leaves it for Rakkr's own agent: its env
/// file names the controller's HTTPS API and the node's token, plus
/// variables this agent has no key for; no identity. The agent links to
/// the bridge on that host (here the reference controller stands in for
/// it, at `controller.bridge_port`), enrolls with the token by itself, and
/// says once what it does with each old variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_set_up_by_rakkrs_ansible_role_links_to_the_bridge_and_enrolls() {
    let (pki, ctl) = enrolling_controller().await;
    let h = ctl.handle();
    h.add_enroll_token("rakkr_node_tok", "node_x32_test", Duration::from_secs(3600));
    let mut events = h.subscribe();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let cache = tmp.path().join("cache");
    let mut env = fresh_node(&pki, &state, ctl.local_addr(), "node_x32_test");
    // What the role's recorder-agent.env.j2 writes.
    for (k, v) in [
        ("RAKKR_CONTROLLER_URL", "https://127.0.0.1:8787".to_owned()),
        ("RAKKR_CONTROLLER_TOKEN", "rakkr_node_tok".into()),
        ("RAKKR_CAPTURE_BACKEND", "alsa".into()),
        ("RAKKR_AGENT_CACHE_DIR", cache.display().to_string()),
        (
            "RAKKR_AGENT_HEALTH_LOG_FILE",
            state.join("health-events.jsonl").display().to_string(),
        ),
        // Where the bridge listens on that host.
        (
            "RAKKR_CONTROLLER_BRIDGE_PORT",
            ctl.local_addr().port().to_string(),
        ),
    ] {
        env.insert(k.into(), v);
    }
    let check = run_agent(&["check", "--config-only"], &env);
    assert!(check.status.success(), "{check:?}");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("rakkr-bridge"), "{said}");
    assert!(
        said.contains("RAKKR_AGENT_CACHE_DIR") && said.contains("recordings_path"),
        "{said}"
    );
    let agent = AgentProcess::spawn(&env);
    let issued = wait_for(&mut events, T, "Enrolled", |e| match e {
        ControllerEvent::Enrolled { node, sha256 } if node == "node_x32_test" => {
            Some(sha256.clone())
        }
        _ => None,
    })
    .await;
    let presented = wait_for(&mut events, T, "Connected", |e| match e {
        ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
        _ => None,
    })
    .await;
    assert_eq!(presented, issued);
    assert!(agent.count(&["enrolled with the controller"]) >= 1);
    // Every old variable is accounted for, once.
    assert_eq!(
        agent.count(&["RAKKR_AGENT_HEALTH_LOG_FILE", "is not used"]),
        1
    );
    assert_eq!(
        agent.count(&["RAKKR_AGENT_CACHE_DIR", "sets storage.recordings_path"]),
        1
    );
    assert_eq!(agent.count(&["RAKKR_CAPTURE_BACKEND"]), 0, "alsa is ours");
}

/// Stands in for the Rakkr controller's word on a node token (the bridge
/// asks it over HTTP): `rakkr_node_good` is `node_x32_test`'s.
#[derive(Debug)]
struct RakkrTokens;

impl rakkr_controller::TokenCheck for RakkrTokens {
    fn check<'a>(&'a self, node: &'a str, token: &'a str) -> rakkr_controller::TokenVerdict<'a> {
        Box::pin(async move {
            match (node, token) {
                ("node_x32_test", "rakkr_node_good") => Ok(()),
                (_, "rakkr_node_good") => Err(format!("that token is not {node}'s")),
                _ => Err("the Rakkr controller does not know that token".into()),
            }
        })
    }
}

/// A token the controller did not issue goes to its token check: a wrong
/// one is refused and nothing is issued or written; the right one enrolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_checked_elsewhere_enrolls_only_when_it_is_the_nodes() {
    let (pki, ctl) =
        enrolling_controller_with(|c| c.token_check = Some(std::sync::Arc::new(RakkrTokens))).await;
    let h = ctl.handle();
    let mut events = h.subscribe();
    let tmp = tempfile::tempdir().unwrap();
    let node = |dir: &str, node: &str, token: &str| {
        let state = tmp.path().join(dir);
        let mut env = fresh_node(&pki, &state, ctl.local_addr(), node);
        env.insert("RAKKR_CONTROLLER_TOKEN".into(), token.into());
        (state, env)
    };
    for (dir, id, token, why) in [
        ("bad", "node_x32_test", "rakkr_node_bad", "does not know"),
        ("other", "node_other", "rakkr_node_good", "not node_other's"),
    ] {
        let (state, env) = node(dir, id, token);
        let _agent = AgentProcess::spawn(&env);
        let reason = wait_for(&mut events, T, "EnrollRefused", |e| match e {
            ControllerEvent::EnrollRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains(why), "{reason}");
        assert!(!state.join("trust/node.pem").exists(), "nothing issued");
    }
    let (state, env) = node("good", "node_x32_test", "rakkr_node_good");
    let _agent = AgentProcess::spawn(&env);
    wait_for(&mut events, T, "Enrolled", |e| match e {
        ControllerEvent::Enrolled { node, .. } if node == "node_x32_test" => Some(()),
        _ => None,
    })
    .await;
    wait_for(&mut events, T, "Connected", |e| match e {
        ControllerEvent::Connected { node, .. } if node == "node_x32_test" => Some(()),
        _ => None,
    })
    .await;
    assert!(state.join("trust/node.pem").exists());
}
