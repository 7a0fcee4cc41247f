//! The trust CLI (`trust show`, `trust install`) on the real binary, with a
//! running daemon and without one.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rakkr_controller::ControllerEvent;
use rakkr_devpki::{Ca, Leaf, Validity};
use rakkr_e2e::agent::{AgentProcess, agent_env, run_agent};
use rakkr_e2e::{TestPki, connected_agent, wait_for};
use sha2::{Digest, Sha256};

use crate::T;

fn state_env(state: &Path) -> HashMap<String, String> {
    HashMap::from([("RAKKR_STATE_DIR".into(), state.display().to_string())])
}

/// Every file under `dir` (links followed) with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                out.insert(p.display().to_string(), (bytes, mode));
            }
        }
    }
    out
}

/// Writes `leaf` and `ca_pem` as files to install from; returns the args.
fn files(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec!["trust".to_owned(), "install".to_owned()];
    for (flag, name, body) in [
        ("--ca", "ca.pem", ca_pem),
        ("--cert", "cert.pem", cert_pem),
        ("--key", "key.pem", key_pem),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        args.extend([flag.to_owned(), p.display().to_string()]);
    }
    args
}

fn leaf_sha256(leaf: &Leaf) -> String {
    let der = rakkr_protocol::tls::certs_from_pem(leaf.cert_pem.as_bytes(), "leaf").unwrap();
    hex::encode(Sha256::digest(der[0].as_ref()))
}

#[test]
fn trust_show_on_an_empty_state_directory_says_what_is_missing_and_exits_4() {
    let state = tempfile::tempdir().unwrap();
    let out = run_agent(&["trust", "show", "--json"], &state_env(state.path()));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "absent");
    let reason = v["reason"].as_str().unwrap();
    for missing in ["CA bundle", "node certificate", "private key"] {
        assert!(reason.contains(missing), "{reason}");
    }
    assert!(
        !state.path().join("trust").exists(),
        "show must not create anything"
    );
}

#[test]
fn trust_install_refusals_have_distinct_exit_codes_and_write_nothing() {
    let pki = TestPki::new();
    let state = tempfile::tempdir().unwrap();
    pki.node_trust(state.path(), "node-r", Validity::days(30));
    let before = snapshot(&state.path().join("trust"));
    let good = pki.ca.issue_node("node-r", Validity::days(30)).unwrap();
    let other_key = pki.ca.issue_node("node-r", Validity::days(30)).unwrap();
    let foreign_ca = Ca::new("Not our fleet").unwrap();
    let foreign = foreign_ca.issue_node("node-r", Validity::days(30)).unwrap();
    let expired = pki.ca.issue_node("node-r", Validity::expired()).unwrap();
    let other_node = pki.ca.issue_node("node-s", Validity::days(30)).unwrap();
    let ca = pki.ca.cert_pem.as_str();
    let input = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unreadable",
            (ca, "-----BEGIN nonsense", good.key_pem.as_str()),
            20,
            "certificate",
        ),
        (
            "wrong key",
            (ca, good.cert_pem.as_str(), other_key.key_pem.as_str()),
            21,
            "does not match",
        ),
        (
            "wrong CA",
            (ca, foreign.cert_pem.as_str(), foreign.key_pem.as_str()),
            22,
            "does not chain",
        ),
        (
            "expired",
            (ca, expired.cert_pem.as_str(), expired.key_pem.as_str()),
            23,
            "not valid now",
        ),
        (
            "other node",
            (
                ca,
                other_node.cert_pem.as_str(),
                other_node.key_pem.as_str(),
            ),
            24,
            "node-s",
        ),
    ];
    for (what, (ca, cert, key), code, needle) in cases {
        let args = files(&input.path().join(what), ca, cert, key);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_agent(&args, &state_env(state.path()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(
            snapshot(&state.path().join("trust")),
            before,
            "{what}: the trust store must be untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_install_while_connected_reconnects_with_the_new_certificate_and_keeps_it() {
    let mut c = connected_agent("node-t", |_| {}).await;
    let pid = c.agent.pid();
    let fresh = c.pki.ca.issue_node("node-t", Validity::days(60)).unwrap();
    let input = tempfile::tempdir().unwrap();
    let args = files(
        input.path(),
        &c.pki.ca.cert_pem,
        &fresh.cert_pem,
        &fresh.key_pem,
    );
    let env = state_env(c.state.path());
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_agent(&args, &env)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.contains("reconnects as node-t"), "{stdout}");
    let want = leaf_sha256(&fresh);
    let got = wait_for(
        &mut c.events,
        T,
        "reconnect with the new cert",
        |e| match e {
            ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(got, want, "the agent must present the new certificate");
    assert_eq!(c.agent.pid(), pid);
    assert!(c.agent.is_running(), "no restart");

    let trust = c.state.path().join("trust");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&trust), 0o700);
    assert_eq!(mode(&trust.join("node.key")), 0o600);
    assert_eq!(mode(&trust.join("current")), 0o700);
    assert_eq!(
        std::fs::read_to_string(trust.join("node.pem")).unwrap(),
        fresh.cert_pem
    );

    // After a restart it still uses the new one.
    c.agent.terminate(T).expect("agent stops");
    let _agent = AgentProcess::spawn(&agent_env(c.state.path(), c.ctl.local_addr()));
    let again = wait_for(&mut c.events, T, "reconnect after restart", |e| match e {
        ControllerEvent::Connected { cert_sha256, .. } => Some(cert_sha256.clone()),
        _ => None,
    })
    .await;
    assert_eq!(again, want);
}
