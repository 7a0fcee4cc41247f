//! The real agent binary as a child process, with its stderr collected.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Environment for an agent talking to a controller at `addr`, with fast
/// reconnects for tests.
pub fn agent_env(state: &Path, addr: std::net::SocketAddr) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("RAKKR_STATE_DIR".into(), state.display().to_string());
    env.insert("RAKKR_CONTROLLER_URL".into(), format!("rakkr://{addr}"));
    env.insert("RAKKR_CONTROLLER_BACKOFF_INITIAL_MS".into(), "100".into());
    env.insert("RAKKR_CONTROLLER_BACKOFF_MAX_MS".into(), "400".into());
    env.insert(
        "RAKKR_CONTROLLER_CONNECT_TIMEOUT_SECONDS".into(),
        "5".into(),
    );
    env.insert("RAKKR_LOG".into(), "info".into());
    env
}

/// Runs `trust install --ca CA --cert CERT --key KEY`.
pub fn trust_install(
    ca: &Path,
    cert: &Path,
    key: &Path,
    env: &HashMap<String, String>,
) -> std::process::Output {
    let (ca, cert, key) = (
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    run_agent(
        &[
            "trust", "install", "--ca", &ca, "--cert", &cert, "--key", &key,
        ],
        env,
    )
}

/// An agent's stderr lines, shared with the thread that reads them.
pub type LogLines = Arc<Mutex<Vec<String>>>;

#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Runs the agent to completion with a clean environment plus `env`.
pub fn run_agent(args: &[&str], env: &HashMap<String, String>) -> std::process::Output {
    let mut cmd = base_command(env);
    cmd.args(args);
    retry_busy(|| cmd.output()).expect("running the agent")
}

/// The target triple `bin` was built for (its `--version` "target:" line).
pub fn target_of(bin: &Path) -> String {
    let out = retry_busy(|| bin_command(bin, &HashMap::new()).arg("--version").output())
        .expect("running --version");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("target: "))
        .unwrap_or_else(|| panic!("{} --version names no target", bin.display()))
        .trim()
        .to_owned()
}

/// An empty config file, so tests never read a machine's real one.
fn empty_config() -> &'static std::path::Path {
    static EMPTY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        let p =
            std::env::temp_dir().join(format!("rakkr-empty-config-{}.toml", std::process::id()));
        std::fs::write(&p, b"").expect("empty config");
        p
    })
}

fn base_command(env: &HashMap<String, String>) -> Command {
    bin_command(&crate::agent_bin(), env)
}

/// `bin` with a clean environment plus `env`.
pub fn bin_command(bin: &Path, env: &HashMap<String, String>) -> Command {
    let mut cmd = Command::new(bin);
    // NOTE: a clean environment, so a developer's RAKKR_* never leak in.
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("RAKKR_CONFIG", empty_config());
    cmd.envs(env);
    cmd
}

/// Runs `start` (a spawn of a binary), again while the binary is "text
/// file busy", for up to two seconds.
///
/// NOTE: a binary this process has just written (an install copy, a stamped
/// build) stays open for writing in any child another test thread forked
/// meanwhile, until that child execs; exec of it fails with ETXTBSY in that
/// window. The agent's own `--version` check of a candidate retries the same
/// way. See: https://github.com/golang/go/issues/22315
pub fn retry_busy<T>(mut start: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    const ATTEMPTS: u32 = 100;
    for _ in 1..ATTEMPTS {
        match start() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            done => return done,
        }
    }
    start()
}

impl AgentProcess {
    /// Spawns `rakkr-recorder-agent run` (config file explicitly absent:
    /// everything comes from `env`).
    pub fn spawn(env: &HashMap<String, String>) -> Self {
        Self::spawn_args(&["run"], env)
    }

    /// Spawns the agent with `args` (stdout discarded, stderr collected).
    pub fn spawn_args(args: &[&str], env: &HashMap<String, String>) -> Self {
        Self::spawn_bin(&crate::agent_bin(), args, env)
    }

    /// Spawns `bin` (an agent binary) with `args`.
    pub fn spawn_bin(bin: &Path, args: &[&str], env: &HashMap<String, String>) -> Self {
        let mut cmd = bin_command(bin, env);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = retry_busy(|| cmd.spawn())
            .unwrap_or_else(|e| panic!("spawning the agent {}: {e}", bin.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("RAKKR_TEST_ECHO").is_some() {
                    eprintln!("agent: {line}");
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The lines `log` reads, shared, for a watcher that outlives `self`.
    pub fn log_handle(&self) -> LogLines {
        self.lines.clone()
    }

    /// How many log lines contain every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.log()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits until at least `n` log lines contain all `needles`.
    pub fn wait_log(&self, needles: &[&str], n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needles) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out after {timeout:?} waiting for {n} log line(s) with {needles:?}; log:\n{}",
            self.log().join("\n")
        );
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Waits for exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then the exit status (within `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.wait_exit(timeout)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
