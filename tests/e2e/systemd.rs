//! systemd: the agent speaks sd_notify to a real notify socket (READY,
//! STATUS lines, WATCHDOG pings, STOPPING), and the shipped unit passes
//! `systemd-analyze verify` and rates 2.0 or better in
//! `systemd-analyze security --offline=true`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rakkr_controller::ControllerEvent;
use rakkr_e2e::agent::AgentProcess;
use rakkr_protocol::CommandBody;

use crate::takes::{self, Setup, recording_setup, wait_device};

/// Datagrams received on `sock` until `until` matches one (or `within`).
fn collect(sock: &UnixDatagram, within: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = until(&msg);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
    panic!("timed out after {within:?}; notifications so far: {got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_notifies_systemd_ready_status_watchdog_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let Setup {
        feeder: _feeder,
        ctl,
        mut events,
        mut env,
        ..
    } = recording_setup(tmp.path(), &[], false).await;
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    env.insert("NOTIFY_SOCKET".into(), sock_path.display().to_string());
    // A 0.9 s watchdog: pings every 0.3 s.
    env.insert("WATCHDOG_USEC".into(), "900000".into());
    let mut agent = AgentProcess::spawn(&env);
    let first = collect(&sock, crate::T, |m| m.contains("READY=1"));
    let ready = first.last().unwrap();
    assert!(ready.contains("STATUS=started"), "{ready}");
    rakkr_e2e::wait_for(&mut events, crate::T, "Connected", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    collect(&sock, crate::T, |m| m.contains("STATUS=connected to"));
    let h = ctl.handle();
    wait_device(&h, || agent.log().join("\n")).await;
    takes::started(&h, takes::start("show-sd")).await;
    let status = collect(&sock, crate::T, |m| {
        m.contains("STATUS=connected to") && m.contains("recording take show-sd on ")
    });
    // Pings keep coming while the take records: several within 2 s.
    let t = Instant::now();
    let pings = collect(&sock, Duration::from_secs(5), |_| false_after(t));
    let n = pings.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(n >= 3, "{n} pings in 2 s: {pings:#?} (before: {status:#?})");
    takes::run(
        &h,
        CommandBody::StopTake {
            take_id: "show-sd".into(),
        },
    )
    .await;
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    collect(&sock, crate::T, |m| m.contains("STOPPING=1"));
    assert!(agent.wait_exit(crate::T).unwrap().success());
    drop(ctl);
}

/// True once 2 s have passed since `t` (ends a collection window).
fn false_after(t: Instant) -> bool {
    t.elapsed() >= Duration::from_secs(2)
}

/// The shipped unit with its binary path pointed at the built agent
/// (`verify` checks that ExecStart= exists).
fn unit_copy(dir: &Path) -> std::path::PathBuf {
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/rakkr-recorder-agent.service");
    let bin = rakkr_e2e::agent_bin();
    let text = std::fs::read_to_string(unit).unwrap().replace(
        "/opt/rakkr/bin/rakkr-recorder-agent",
        &bin.display().to_string(),
    );
    let out = dir.join("rakkr-recorder-agent.service");
    std::fs::write(&out, text).unwrap();
    out
}

#[test]
fn the_unit_verifies_and_rates_2_or_better() {
    if !rakkr_e2e::requires(
        "systemd-analyze (apt-get install systemd)",
        rakkr_e2e::have("systemd-analyze"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit_copy(tmp.path());
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; .ci/setup installs it)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for rakkr-recorder-agent.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// (policy, rt_priority) of the agent's thread named `name`, from
/// /proc/PID/task/*/stat (fields 41 and 40, see proc(5)).
fn thread_sched(pid: u32, name: &str) -> Option<(u32, u32)> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        if head.split_once(" (")?.1 != name {
            continue;
        }
        // `rest` starts at field 3 (state).
        let f: Vec<&str> = rest.split_whitespace().collect();
        return Some((f[41 - 3].parse().ok()?, f[40 - 3].parse().ok()?));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_thread_runs_sched_fifo_and_nothing_else_does() {
    if !rakkr_e2e::requires("root (real-time priority)", rakkr_e2e::is_root()) {
        return;
    }
    // The paced test device blocks on its FIFO, so real time is safe here;
    // `auto` would keep a userspace plugin at normal priority.
    let tmp = tempfile::tempdir().unwrap();
    let rig = takes::recording_node_on(
        tmp.path(),
        &[
            ("RAKKR_CAPTURE_REALTIME", "always"),
            ("RAKKR_CAPTURE_REALTIME_PRIORITY", "60"),
        ],
        false,
    )
    .await;
    let pid = rig.agent.pid();
    // SCHED_FIFO is policy 1 (sched.h); SCHED_OTHER 0.
    assert_eq!(
        thread_sched(pid, "cpal_alsa_in"),
        Some((1, 60)),
        "{}",
        rig.agent.log().join("\n")
    );
    assert_eq!(thread_sched(pid, "rakkr-engine"), Some((0, 0)));
    assert!(
        thread_sched(pid, "rakkr-capture-open").is_none(),
        "the helper thread is gone"
    );
    assert!(
        rig.agent
            .count(&["capture running", "realtime_priority=Some(60)"])
            >= 1
    );
}
