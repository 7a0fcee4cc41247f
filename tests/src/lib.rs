//! Harness for end-to-end tests and benchmarks: builds and spawns the real
//! agent binary, generates real certificates, runs the reference controller.
//!
//! Every wait here is bounded in time; every test uses loopback only.

pub mod agent;
pub mod fakeconsole;
pub mod https;
pub mod jack;
pub mod pki;
pub mod procstat;
pub mod proxy;
pub mod shape;
pub mod tags;
pub mod timeline;
pub mod update;

// The simulated console and its checks live with the reference controller
// (its demo uses them); the tests use them under their old names.
pub use rakkr_controller::sim::{self as alsa, check as takecheck, decode};

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use rakkr_controller::{Controller, ControllerConfig, ControllerEvent};
use tokio::sync::broadcast;

pub use agent::AgentProcess;
pub use pki::TestPki;

/// The agent binary, built (or brought up to date) once per test process;
/// `RAKKR_E2E_AGENT_BIN` names another one to use as it is (a static
/// release build, or one with symbols for profiling a benchmark).
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RAKKR_E2E_AGENT_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "RAKKR_E2E_AGENT_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        built("rakkr-recorder-agent")
    })
    .clone()
}

/// The `rakkr-bridge` binary, built once per process like the agent
/// (`RAKKR_E2E_BRIDGE_BIN` names another build, e.g. one with symbols to
/// profile).
pub fn bridge_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("RAKKR_E2E_BRIDGE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => built("rakkr-bridge"),
    })
    .clone()
}

/// The reference controller binary (`rakkr-controller`, its own crate),
/// built once per process like the agent.
pub fn controller_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built("rakkr-controller")).clone()
}

/// `cargo build` of the agent binary with extra `args` and `env`; panics on failure.
pub fn build_agent(args: &[&str], env: &[(&str, &str)]) {
    build_bin("rakkr-recorder-agent", args, env);
}

/// Builds binary `name` (of the package of the same name) in this test's
/// profile and returns its path.
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_owned();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    build_bin(name, if release { &["--release"] } else { &[] }, &[]);
    let bin = profile_dir.join(name);
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// `cargo build -p NAME --bin NAME` with extra `args` and `env`; panics on failure.
fn build_bin(name: &str, args: &[&str], env: &[(&str, &str)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", name, "--bin", name])
        .args(args)
        .envs(env.iter().copied())
        .status()
        .unwrap_or_else(|e| panic!("running cargo build for {name}: {e}"));
    assert!(status.success(), "building {name} {args:?} {env:?} failed");
}

/// Installs Debian package `package` with apt-get (through
/// `packaging/lib/apt.sh`, which queues concurrent apt users) unless
/// `probe` (a command and its arguments) runs. For benchmarks that compare
/// against a reference tool.
pub fn ensure_tool(probe: &[&str], package: &str) {
    if std::process::Command::new(probe[0])
        .args(&probe[1..])
        .output()
        .is_ok()
    {
        return;
    }
    let apt = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/lib/apt.sh");
    let st = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(". \"$0\" && apt_install {package}"))
        .arg(apt)
        .status()
        .expect("running bash");
    assert!(st.success(), "installing {package}");
}

/// Whether a test that needs `what` (root, jackd, ansible, systemd-analyze)
/// can run here. Outside CI a test without it is skipped and says why on
/// stderr; in CI (`CI` set) it fails, because CI runs every test and
/// `.ci/setup` installs what they need.
pub fn requires(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs {what}, which is missing: CI must run every test (see .ci/setup)"
    );
    eprintln!("SKIPPED: this test needs {what}, which this machine lacks (CI runs it)");
    false
}

/// Whether this process runs as root (tmpfs mounts, chroots, other users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(cmd)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// Waits until `ready` holds, checking every 20 ms, at most `timeout`
/// (a bound for a test gone wrong, not a pace): tests wait for a state,
/// never for a time.
pub fn wait_until(timeout: std::time::Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether the first file of segment `segment` of the take in `take` (32
/// channels at 48 kHz) holds a second of audio made durable by syncs: a WAV
/// or W64 header declaring that much (headers declare the synced length),
/// or a FLAC file past its header and a second of the test signal (about
/// 22 KB per channel).
pub fn segment_synced(take: &std::path::Path, segment: u32) -> bool {
    let tag = format!("-s{segment:03}.");
    let Ok(dir) = std::fs::read_dir(take) else {
        return false;
    };
    let mut files: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&tag))
        .collect();
    files.sort();
    let Some(first) = files.first() else {
        return false;
    };
    let Ok(bytes) = std::fs::read(first) else {
        return false;
    };
    let field = |at: usize, len: usize| bytes.get(at..at + len);
    let data = bytes.windows(4).position(|w| w == b"data");
    // NOTE: a muxer may write a placeholder size before the first sync: a
    // declared size counts only when the file really holds that much.
    let len = bytes.len() as u64;
    match first.extension().and_then(|e| e.to_str()) {
        Some("wav") => data.and_then(|i| field(i + 4, 4)).is_some_and(|n| {
            let n = u64::from(u32::from_le_bytes(n.try_into().expect("4 bytes")));
            n >= 48_000 * 3 && n < len
        }),
        // W64: a 16-byte GUID starting "data", then the chunk size (with
        // its 24-byte header) as u64.
        Some("w64") => data.and_then(|i| field(i + 16, 8)).is_some_and(|n| {
            let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
            n >= 24 + 48_000 * 3 * 32 && n < len
        }),
        _ => bytes.len() > 32 * 1024,
    }
}

/// Starts an in-process reference controller on 127.0.0.1 with a random port.
pub async fn start_controller(
    tls: std::sync::Arc<rustls::ServerConfig>,
    tweak: impl FnOnce(&mut ControllerConfig),
) -> Controller {
    let mut cfg = ControllerConfig::new("127.0.0.1:0".parse().expect("addr"), tls);
    cfg.heartbeat = Duration::from_millis(500);
    cfg.handshake_timeout = Duration::from_secs(5);
    tweak(&mut cfg);
    Controller::start(cfg)
        .await
        .expect("starting the reference controller")
}

/// Waits until `pred` accepts an event, or panics after `timeout`.
pub async fn wait_for<T>(
    rx: &mut broadcast::Receiver<ControllerEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&ControllerEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("controller event stream ended while waiting for {what}: {e}"),
            Ok(Ok(ev)) => ev,
        };
        if let Some(v) = pred(&ev) {
            return v;
        }
    }
}

/// Initialises test logging once (RUST_LOG controls it).
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A reference controller with one real agent connected to it.
#[derive(Debug)]
pub struct Connected {
    pub pki: TestPki,
    pub ctl: Controller,
    pub handle: rakkr_controller::ControllerHandle,
    /// Controller events after the Connected one.
    pub events: broadcast::Receiver<ControllerEvent>,
    pub state: tempfile::TempDir,
    pub agent: AgentProcess,
    pub hello: Box<rakkr_protocol::Hello>,
}

/// Starts a controller (tweaked by `tweak`), gives `node_id` a certificate
/// valid for 30 days, spawns the agent and waits until it is welcomed.
pub async fn connected_agent(
    node_id: &str,
    tweak: impl FnOnce(&mut ControllerConfig),
) -> Connected {
    init_logging();
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), tweak).await;
    let handle = ctl.handle();
    let mut events = handle.subscribe();
    let state = tempfile::tempdir().expect("state dir");
    pki.node_trust(state.path(), node_id, rakkr_devpki::Validity::days(30));
    let agent = AgentProcess::spawn(&agent::agent_env(state.path(), ctl.local_addr()));
    let hello = wait_for(
        &mut events,
        Duration::from_secs(20),
        "Connected",
        |e| match e {
            ControllerEvent::Connected { hello, .. } => Some(hello.clone()),
            _ => None,
        },
    )
    .await;
    Connected {
        pki,
        ctl,
        handle,
        events,
        state,
        agent,
        hello,
    }
}

/// An event's variant name, for short test messages.
pub fn kind_of(body: &rakkr_protocol::EventBody) -> String {
    format!("{body:?}")
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}
