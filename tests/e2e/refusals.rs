//! Every refusal: a clear error on both sides, and the agent keeps retrying
//! with backoff (never exits, never connects without mutual TLS).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rakkr_controller::{Controller, ControllerEvent};
use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::{TestPki, init_logging, start_controller, wait_for};
use rakkr_protocol::{RejectReason, VersionRange};

use crate::T;

/// Waits for `n` controller-side failures matching `needle`, returns them.
async fn controller_failures(ctl: &Controller, n: usize, needle: &str) -> Vec<String> {
    let mut rx = ctl.handle().subscribe();
    let mut seen = Vec::new();
    while seen.len() < n {
        let e = wait_for(&mut rx, T, "a handshake failure", |e| match e {
            ControllerEvent::HandshakeFailed { error, .. } => Some(error.clone()),
            ControllerEvent::Rejected { reject, .. } => Some(reject.message.clone()),
            ControllerEvent::Connected { node, .. } => {
                panic!("node {node} connected although it must be refused")
            }
            _ => None,
        })
        .await;
        assert!(
            e.contains(needle),
            "controller error {e:?} does not mention {needle:?}"
        );
        seen.push(e);
    }
    seen
}

fn assert_retrying(agent: &mut AgentProcess, needle: &str) {
    // Two failed attempts, each logged with the reason and the next delay.
    agent.wait_log(&["controller link down", needle, "retry_in"], 2, T);
    assert!(
        agent.is_running(),
        "the agent must keep running and retrying"
    );
    assert_eq!(agent.count(&["connected to controller"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_from_another_ca_is_refused() {
    init_logging();
    let fleet = TestPki::new();
    let rogue = TestPki::new();
    let ctl = start_controller(rogue.server_config(), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    fleet.node_trust(state.path(), "node-a", Validity::days(30));
    refused(
        ctl,
        state.path(),
        HashMap::new(),
        "does not trust the CA",
        "not issued by a CA in our trust bundle",
    )
    .await;
}

/// Runs an agent with `env` tweaks against `ctl`; checks both sides' errors.
async fn refused(
    ctl: Controller,
    state: &std::path::Path,
    tweak: HashMap<&str, &str>,
    ctl_needle: &str,
    agent_needle: &str,
) {
    let mut env = agent_env(state, ctl.local_addr());
    for (k, v) in tweak {
        env.insert(k.into(), v.into());
    }
    // NOTE: the agent binary is built (once per test process) before the
    // waiter's clock starts: a build is not the controller being slow.
    let _ = rakkr_e2e::agent_bin();
    let ctl_needle = ctl_needle.to_owned();
    let waiter = tokio::spawn(async move {
        if !ctl_needle.is_empty() {
            controller_failures(&ctl, 2, &ctl_needle).await;
        }
        ctl
    });
    let mut agent = AgentProcess::spawn(&env);
    assert_retrying(&mut agent, agent_needle);
    let ctl = waiter.await.unwrap();
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_an_expired_certificate_is_refused() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-old", Validity::expired());
    refused(
        ctl,
        state.path(),
        HashMap::new(),
        "expired",
        "refused our certificate because it has expired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_name_is_refused() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-b", Validity::days(30));
    let tweak = HashMap::from([(
        "RAKKR_CONTROLLER_SERVER_NAME",
        "controller.elsewhere.example",
    )]);
    refused(
        ctl,
        state.path(),
        tweak,
        "",
        "does not name the configured server name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_offering_only_tls12_is_refused() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config_with(&[&rustls::version::TLS12]), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-c", Validity::days(30));
    refused(
        ctl,
        state.path(),
        HashMap::new(),
        "TLS 1.3",
        "does not speak TLS 1.3",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_protocol_version_is_rejected_naming_both_ranges() {
    init_logging();
    let pki = TestPki::new();
    // A controller that speaks only versions after the agent's.
    let agent_range = rakkr_protocol::version::SUPPORTED;
    let newer = VersionRange {
        min: agent_range.max + 1,
        max: agent_range.max + 2,
    };
    let ctl = start_controller(pki.server_config(), |c| c.versions = newer).await;
    let mut rx = ctl.handle().subscribe();
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-d", Validity::days(30));
    let mut agent = AgentProcess::spawn(&agent_env(state.path(), ctl.local_addr()));
    let reject = wait_for(&mut rx, T, "Rejected", |e| match e {
        ControllerEvent::Rejected { reject, .. } => Some(reject.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        reject.reason,
        RejectReason::NoCommonVersion {
            agent: agent_range,
            controller: newer
        }
    );
    assert_retrying(
        &mut agent,
        &format!(
            "agent speaks {}..={}, controller speaks {}..={}",
            agent_range.min, agent_range.max, newer.min, newer.max
        ),
    );
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cannot_claim_another_nodes_id() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-real", Validity::days(30));
    let tweak = HashMap::from([("RAKKR_NODE_ID", "node-impostor")]);
    refused(
        ctl,
        state.path(),
        tweak,
        "certificate names \"node-real\"",
        "claims node id \"node-impostor\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_a_certificate_never_connects_and_retries() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let state = tempfile::tempdir().unwrap();
    refused(ctl, state.path(), HashMap::new(), "", "reading CA bundle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_refuses_a_client_without_certificate() {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |_| {}).await;
    let mut rx = ctl.handle().subscribe();
    // A TLS 1.3 client that trusts the controller but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(rakkr_protocol::tls::provider())
        .with_protocol_versions(rakkr_protocol::tls::TLS13_ONLY)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![rakkr_protocol::ALPN.to_vec()];
    let tcp = tokio::net::TcpStream::connect(ctl.local_addr())
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    // TLS 1.3: the refusal arrives as an alert on the first read.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
    )
    .await
    .unwrap();
    let err = read.expect_err("the controller must refuse a client without certificate");
    assert!(
        rakkr_protocol::tls::explain(&err).contains("requires a client certificate"),
        "{err}"
    );
    let error = wait_for(&mut rx, T, "HandshakeFailed", |e| match e {
        ControllerEvent::HandshakeFailed { error, .. } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(error.contains("no certificate"), "{error}");
    ctl.shutdown().await;
}
