//! Certificate renewal over the authenticated link, against the reference
//! controller's CA: by itself before expiry, on the controller's command,
//! with `trust rotate`; refusals of bad certificates; revocation of the
//! old one; during a take (bit-exact); CA rollover. No restart anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rakkr_controller::renewal::{RenewFault, Renewal};
use rakkr_controller::{ControllerEvent, ControllerHandle};
use rakkr_devpki::{Ca, Validity};
use rakkr_e2e::agent::{AgentProcess, agent_env, run_agent};
use rakkr_e2e::{connected_agent, wait_for};
use rakkr_protocol::{CommandBody, EventBody, Outcome, Reply};
use sha2::{Digest, Sha256};

use crate::T;

fn cert_sha256(state: &Path) -> String {
    let pem = std::fs::read(state.join("trust/node.pem")).unwrap();
    let der = rakkr_protocol::tls::certs_from_pem(&pem, "node.pem").unwrap();
    hex::encode(Sha256::digest(der[0].as_ref()))
}

fn event(e: &ControllerEvent) -> Option<&EventBody> {
    match e {
        ControllerEvent::Event { event, .. } => Some(&event.body),
        _ => None,
    }
}

/// Waits for a TrustRenewed event; returns the new certificate's SHA-256
/// and the reason. The agent reconnects with the new certificate before it
/// reports the renewal (it commits once welcomed): that Connected must
/// have come first and carried the same certificate.
async fn renewed(
    rx: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    within: Duration,
) -> (String, String) {
    let mut presented = None;
    let (sha, reason) = wait_for(rx, within, "TrustRenewed", |e| {
        if let ControllerEvent::Connected { cert_sha256, .. } = e {
            presented = Some(cert_sha256.clone());
        }
        match event(e) {
            Some(EventBody::TrustRenewed { sha256, reason, .. }) => {
                Some((sha256.clone(), reason.clone()))
            }
            Some(EventBody::TrustRenewFailed { reason }) => panic!("renewal failed: {reason}"),
            _ => None,
        }
    })
    .await;
    assert_eq!(
        presented.as_deref(),
        Some(sha.as_str()),
        "reconnected with the renewed certificate"
    );
    (sha, reason)
}

async fn connected_with(
    rx: &mut tokio::sync::broadcast::Receiver<ControllerEvent>,
    within: Duration,
) -> String {
    wait_for(rx, within, "Connected", |e| match e {
        ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
        _ => None,
    })
    .await
}

async fn command(h: &ControllerHandle, node: &str, body: CommandBody) -> Outcome {
    h.command(node, body, T).await.expect("answered").outcome
}

fn renewal(ca: &Arc<Ca>, lifetime: Duration) -> Arc<Renewal> {
    Arc::new(Renewal::new(ca.clone(), lifetime))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_renews_itself_before_expiry_and_connections_continue() {
    let mut c = connected_agent("node-short", |_| {}).await;
    let signer = renewal(&c.pki.ca, Duration::from_secs(3600));
    c.handle.set_renewal(Some(signer));
    // Replace the 30-day certificate by one that lives 24 s: due at ~16 s.
    let short = c
        .pki
        .ca
        .issue_node("node-short", Validity::lasting(Duration::from_secs(24)))
        .unwrap();
    let input = tempfile::tempdir().unwrap();
    for (n, body) in [
        ("ca.pem", &c.pki.ca.cert_pem),
        ("node.pem", &short.cert_pem),
        ("node.key", &short.key_pem),
    ] {
        std::fs::write(input.path().join(n), body).unwrap();
    }
    let state = c.state.path().to_owned();
    let dir = input.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let p = |n: &str| dir.join(n).display().to_string();
        run_agent(
            &[
                "trust",
                "install",
                "--ca",
                &p("ca.pem"),
                "--cert",
                &p("node.pem"),
                "--key",
                &p("node.key"),
            ],
            &[("RAKKR_STATE_DIR".to_owned(), state.display().to_string())].into(),
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let short_sha = connected_with(&mut c.events, T).await;
    assert_eq!(short_sha, cert_sha256(c.state.path()));
    let installed_at = std::time::Instant::now();

    let (sha, reason) = renewed(&mut c.events, Duration::from_secs(40)).await;
    assert!(reason.contains("two thirds"), "{reason}");
    let took = installed_at.elapsed();
    assert!(
        took < Duration::from_secs(24),
        "renewed only after {took:?}, past expiry"
    );
    assert_ne!(sha, short_sha);
    assert_eq!(sha, cert_sha256(c.state.path()));
    // The link is up on the new certificate, and commands work.
    assert!(matches!(
        command(&c.handle, "node-short", CommandBody::Inventory).await,
        Outcome::Done(_)
    ));
    assert!(c.agent.is_running(), "no restart");

    let trust = c.state.path().join("trust");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&trust), 0o700);
    assert_eq!(mode(&trust.join("current")), 0o700);
    assert_eq!(mode(&trust.join("node.key")), 0o600);
    assert_eq!(mode(&trust.join("generations")), 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_from_the_controller_are_refused_and_the_old_identity_keeps_working() {
    let mut c = connected_agent("node-bad", |_| {}).await;
    let signer = renewal(&c.pki.ca, Duration::from_secs(3600));
    c.handle.set_renewal(Some(signer.clone()));
    let before = cert_sha256(c.state.path());
    for (fault, needle) in [
        (RenewFault::WrongKey, "does not match"),
        (RenewFault::WrongCa, "does not chain"),
        (RenewFault::Expired, "not valid now"),
        (RenewFault::OtherNode, "another-node"),
        (RenewFault::Refuse, "refused"),
    ] {
        signer.set_fault(fault);
        let out = command(&c.handle, "node-bad", CommandBody::RotateTrust).await;
        assert!(
            matches!(out, Outcome::Done(Reply::RenewalStarted)),
            "{out:?}"
        );
        let reason = wait_for(&mut c.events, T, "TrustRenewFailed", |e| match event(e) {
            Some(EventBody::TrustRenewFailed { reason }) => Some(reason.clone()),
            Some(EventBody::TrustRenewed { .. }) => panic!("{fault:?} was accepted"),
            _ => None,
        })
        .await;
        assert!(reason.contains(needle), "{fault:?}: {reason}");
        assert_eq!(
            cert_sha256(c.state.path()),
            before,
            "{fault:?}: identity changed"
        );
        assert!(
            matches!(
                command(&c.handle, "node-bad", CommandBody::Inventory).await,
                Outcome::Done(_)
            ),
            "{fault:?}: the link must keep working"
        );
    }
    // And then a good renewal through the CLI works.
    signer.set_fault(RenewFault::None);
    let env = [(
        "RAKKR_STATE_DIR".to_owned(),
        c.state.path().display().to_string(),
    )]
    .into();
    let out = tokio::task::spawn_blocking(move || run_agent(&["trust", "rotate"], &env))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (sha, reason) = renewed(&mut c.events, T).await;
    assert!(reason.contains("asked"), "{reason}");
    assert_ne!(sha, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotation_the_old_certificate_is_revoked_and_a_restart_keeps_the_new_one() {
    let mut c = connected_agent("node-rot", |_| {}).await;
    c.handle
        .set_renewal(Some(renewal(&c.pki.ca, Duration::from_secs(3600))));
    let old = cert_sha256(c.state.path());
    let out = command(&c.handle, "node-rot", CommandBody::RotateTrust).await;
    assert!(
        matches!(out, Outcome::Done(Reply::RenewalStarted)),
        "{out:?}"
    );
    let (new, _) = renewed(&mut c.events, T).await;
    c.handle.revoke(&old);
    c.handle.disconnect("node-rot").await.unwrap();
    assert_eq!(
        connected_with(&mut c.events, T).await,
        new,
        "back on the new one"
    );
    c.agent.terminate(T).expect("stops");
    let _agent = AgentProcess::spawn(&agent_env(c.state.path(), c.ctl.local_addr()));
    assert_eq!(
        connected_with(&mut c.events, T).await,
        new,
        "after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rollover_with_overlap_then_the_old_ca_dropped_without_a_restart() {
    let mut c = connected_agent("node-ca", |_| {}).await;
    let pid = c.agent.pid();
    let new_ca = Ca::new("Rakkr fleet CA 2027").unwrap();
    let rogue = Ca::new("Never pushed").unwrap();
    let controller_from = |ca: &Ca| {
        let leaf = ca
            .issue_controller(&["localhost", "127.0.0.1", "::1"], Validity::days(30))
            .unwrap();
        let id = rakkr_protocol::tls::Identity::from_pem(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            "c",
        )
        .unwrap();
        // Node certificates still come from the old CA during the rollover.
        rakkr_protocol::tls::server_config(
            std::slice::from_ref(&c.pki.ca.cert_der),
            id,
            rakkr_protocol::tls::TLS13_ONLY,
        )
        .unwrap()
    };
    let bundle = |cas: &[&Ca]| CommandBody::TrustBundle {
        cas_pem: cas
            .iter()
            .map(|c| c.cert_pem.clone())
            .collect::<Vec<_>>()
            .join(""),
    };
    // A bundle that would not verify this controller is refused.
    let out = command(&c.handle, "node-ca", bundle(&[&new_ca])).await;
    assert!(
        matches!(&out, Outcome::Failed(f) if f.message.contains("does not verify this controller")),
        "{out:?}"
    );
    // Overlap: old and new.
    let out = command(&c.handle, "node-ca", bundle(&[&c.pki.ca, &new_ca])).await;
    assert!(
        matches!(&out, Outcome::Done(Reply::TrustBundle { ca_sha256 }) if ca_sha256.len() == 2),
        "{out:?}"
    );
    // The controller moves to a certificate from the new CA: the agent follows.
    c.handle.set_tls(controller_from(&new_ca));
    c.handle.disconnect("node-ca").await.unwrap();
    connected_with(&mut c.events, T).await;
    // The old CA is dropped.
    let out = command(&c.handle, "node-ca", bundle(&[&new_ca])).await;
    assert!(
        matches!(&out, Outcome::Done(Reply::TrustBundle { ca_sha256 }) if ca_sha256.len() == 1),
        "{out:?}"
    );
    let ca_file = std::fs::read_to_string(c.state.path().join("trust/ca.pem")).unwrap();
    assert_eq!(ca_file, new_ca.cert_pem);
    c.handle.disconnect("node-ca").await.unwrap();
    connected_with(&mut c.events, T).await;
    // A controller with a certificate from a CA that was never pushed is refused.
    c.handle.set_tls(controller_from(&rogue));
    c.handle.disconnect("node-ca").await.unwrap();
    let failed = wait_for(&mut c.events, T, "HandshakeFailed", |e| match e {
        ControllerEvent::HandshakeFailed { error, .. } => Some(error.clone()),
        ControllerEvent::Connected { .. } => panic!("connected through a CA that was never pushed"),
        _ => None,
    })
    .await;
    assert!(!failed.is_empty());
    c.agent.wait_log(&["UnknownIssuer"], 1, T);
    assert_eq!(c.agent.pid(), pid);
    assert!(c.agent.is_running(), "no restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_a_take_leaves_its_audio_bit_exact() {
    use crate::takes::{NODE, Rig, recording_node, start, started, stopped};
    let tmp = tempfile::tempdir().unwrap();
    let Rig {
        feeder,
        pki,
        ctl,
        agent,
        ..
    } = recording_node(tmp.path(), &[]).await;
    let h = ctl.handle();
    let mut events = h.subscribe();
    h.set_renewal(Some(renewal(&pki.ca, Duration::from_secs(3600))));
    let take = started(&h, start("show-rot")).await;
    crate::takes::audio_taken(&h, 16).await;
    let out = command(&h, NODE, CommandBody::RotateTrust).await;
    assert!(
        matches!(out, Outcome::Done(Reply::RenewalStarted)),
        "{out:?}"
    );
    renewed(&mut events, T).await;
    crate::takes::audio_taken(&h, 16).await;
    let m = stopped(&h, "show-rot").await;
    assert_eq!(m["status"], "complete");
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["xruns"], 0, "{m}");
    let frames = rakkr_e2e::takecheck::check_content(
        Path::new(&take.dir),
        &m,
        &crate::takes::drops(&feeder),
    );
    assert_eq!(frames, m["frames"].as_u64().unwrap());
    assert!(
        frames >= 96_000,
        "the take ran through the rotation: {frames}"
    );
    assert_eq!(agent.count(&["panicked"]), 0);
}

/// A controller whose renewal grace is `grace`, and an agent whose
/// certificate expired yesterday (switched off past its expiry).
async fn expired_node(
    grace: Duration,
) -> (
    rakkr_e2e::TestPki,
    rakkr_controller::Controller,
    tempfile::TempDir,
    AgentProcess,
    tokio::sync::broadcast::Receiver<ControllerEvent>,
) {
    rakkr_e2e::init_logging();
    let pki = rakkr_e2e::TestPki::new();
    let ctl = rakkr_e2e::start_controller(pki.server_config_with_grace(grace), |_| {}).await;
    ctl.handle()
        .set_renewal(Some(renewal(&pki.ca, Duration::from_secs(3600))));
    let events = ctl.handle().subscribe();
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-off", Validity::expired());
    let agent = AgentProcess::spawn(&agent_env(state.path(), ctl.local_addr()));
    (pki, ctl, state, agent, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_expired_within_the_grace_renews_and_reconnects_by_itself() {
    let (_pki, _ctl, state, agent, mut events) =
        expired_node(Duration::from_secs(7 * 86_400)).await;
    let expired = cert_sha256(state.path());
    wait_for(&mut events, T, "RenewalOnly", |e| {
        matches!(e, ControllerEvent::RenewalOnly { .. }).then_some(())
    })
    .await;
    let (sha, _) = renewed(&mut events, T).await;
    assert_ne!(sha, expired);
    assert_eq!(sha, cert_sha256(state.path()));
    let report = run_agent(
        &["trust", "show", "--json"],
        &[(
            "RAKKR_STATE_DIR".to_owned(),
            state.path().display().to_string(),
        )]
        .into(),
    );
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    assert_eq!(agent.count(&["panicked"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_expired_beyond_the_grace_is_refused_and_says_it_must_be_enrolled_again() {
    let (_pki, _ctl, state, agent, mut events) = expired_node(Duration::from_secs(3600)).await;
    wait_for(&mut events, T, "HandshakeFailed", |e| match e {
        ControllerEvent::HandshakeFailed { .. } => Some(()),
        ControllerEvent::Connected { .. } | ControllerEvent::RenewalOnly { .. } => {
            panic!("an expired certificate past the grace got in")
        }
        _ => None,
    })
    .await;
    agent.wait_log(&["must be enrolled again"], 1, T);
    let env = [(
        "RAKKR_STATE_DIR".to_owned(),
        state.path().display().to_string(),
    )]
    .into();
    // NOTE: the reason shows while the link is down between attempts, not
    // during an attempt: ask a few times (bounded), as an operator would.
    let mut status = String::new();
    for _ in 0..50 {
        let out = run_agent(&["status", "--json"], &env);
        status = String::from_utf8_lossy(&out.stdout).into_owned();
        if status.contains("\"disconnected\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.contains("enrolled again"), "{status}");
}
