//! Exit codes and messages of the CLI on bad input.

use std::collections::HashMap;

use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env, run_agent};
use rakkr_e2e::{TestPki, init_logging};

use crate::T;

fn env_with(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn broken_config_file_exits_3_naming_the_file() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(&cfg, "[capture]\nchanels = 32\n").unwrap();
    let out = run_agent(
        &["--print-inventory"],
        &env_with(&[("RAKKR_CONFIG", cfg.display().to_string())]),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chanels") && err.contains(&cfg.display().to_string()),
        "{err}"
    );
}

#[test]
fn bad_environment_value_exits_3_naming_the_variable() {
    let out = run_agent(
        &["check"],
        &env_with(&[("RAKKR_CAPTURE_SAMPLE_RATE", "fast".into())]),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RAKKR_CAPTURE_SAMPLE_RATE=\"fast\""));
}

#[test]
fn explicit_missing_config_file_exits_3() {
    let out = run_agent(
        &["--config", "/nonexistent/x.toml", "check"],
        &HashMap::new(),
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn run_without_controller_exits_3_and_check_without_trust_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let state = ("RAKKR_STATE_DIR", tmp.path().display().to_string());
    let out = run_agent(&["run"], &env_with(std::slice::from_ref(&state)));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no controller configured"));
    let url = ("RAKKR_CONTROLLER_URL", "rakkr://127.0.0.1:1".to_owned());
    let env = env_with(&[state, url]);
    let out = run_agent(&["check"], &env);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node certificate"));
    // systemd's ExecStartPre checks the config only: trust may come later.
    let out = run_agent(&["check", "--config-only"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("controller 127.0.0.1:1"));
}

#[test]
fn check_passes_with_trust_and_version_prints_build_facts() {
    let tmp = tempfile::tempdir().unwrap();
    TestPki::new().node_trust(tmp.path(), "node-ok", Validity::days(10));
    let env = env_with(&[
        ("RAKKR_STATE_DIR", tmp.path().display().to_string()),
        ("RAKKR_CONTROLLER_URL", "rakkr://127.0.0.1:1".into()),
    ]);
    let out = run_agent(&["check"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node node-ok"));
    let out = run_agent(&["--version"], &HashMap::new());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rakkr-recorder-agent "), "{text}");
    for k in ["revision:", "target:", "built:", "ffmpeg:", "alsa-lib:"] {
        assert!(text.contains(k), "--version lacks {k}: {text}");
    }
    assert_eq!(
        run_agent(&["--bogus"], &HashMap::new()).status.code(),
        Some(2)
    );
}

#[test]
fn second_daemon_on_the_same_state_dir_exits_6_and_status_without_daemon_exits_7() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("new-state");
    let env = agent_env(&state, "127.0.0.1:9".parse().unwrap());
    let out = run_agent(&["status"], &env);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut first = AgentProcess::spawn(&env);
    first.wait_log(&["agent started"], 1, T);
    let out = run_agent(&["run"], &env);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_agent(&["status", "--json"], &env);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["pid"], first.pid());
    assert!(
        first
            .terminate(std::time::Duration::from_secs(5))
            .unwrap()
            .success()
    );
    let meta = std::fs::metadata(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "state dir is private"
    );
}
