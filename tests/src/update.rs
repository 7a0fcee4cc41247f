//! Update tests' parts: agent binaries stamped with a release version (built
//! with `RAKKR_VERSION`, cargo profile `stamped`), an install directory
//! like `/opt/rakkr/bin`, and a supervisor that plays systemd's part
//! (`Restart=always`): it starts the installed binary again whenever it exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::AgentProcess;

/// The older release the tests install first.
pub const OLD: &str = "2026.11.23-1";
/// The newer release they update to.
pub const NEW: &str = "2026.11.23-2";

/// An agent binary stamped with `version`; `faults` compiles in the test
/// faults (`RAKKR_FAULT=exit-at-start|no-connect`). Built once per process.
pub fn stamped(version: &str, faults: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // NOTE: held across the build: two variants share one output path.
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(&(version.to_owned(), faults)) {
        return p.clone();
    }
    let target = crate::agent_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    crate::build_agent(
        &["--profile", "stamped"],
        &[
            ("RAKKR_VERSION", version),
            ("RAKKR_BUILD_TEST_FAULTS", if faults { "1" } else { "0" }),
        ],
    );
    let dir = target
        .join("stamped-bins")
        .join(format!("{version}{}", if faults { "-faults" } else { "" }));
    std::fs::create_dir_all(&dir).expect("stamped-bins dir");
    let out = dir.join("rakkr-recorder-agent");
    let tmp = dir.join(".rakkr-recorder-agent.tmp");
    std::fs::copy(target.join("stamped").join("rakkr-recorder-agent"), &tmp)
        .expect("copying the stamped binary");
    std::fs::rename(&tmp, &out).expect("placing the stamped binary");
    built.insert((version.to_owned(), faults), out.clone());
    out
}

/// `<root>/opt/rakkr/bin/rakkr-recorder-agent`, a copy of `bin`.
pub fn install_dir(root: &Path, bin: &Path) -> PathBuf {
    let dir = root.join("opt/rakkr/bin");
    std::fs::create_dir_all(&dir).expect("install dir");
    let path = dir.join("rakkr-recorder-agent");
    std::fs::copy(bin, &path).expect("installing the first binary");
    path
}

/// Restarts `bin` whenever it exits, like systemd's `Restart=always`.
#[derive(Debug)]
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    exits: Arc<Mutex<Vec<ExitStatus>>>,
    log: Arc<Mutex<Vec<String>>>,
    current_pid: Arc<Mutex<Option<u32>>>,
    /// The running agent's stderr so far.
    current_log: Arc<Mutex<Option<crate::agent::LogLines>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Most restarts a supervisor does (a bound for a test gone wrong).
const MAX_STARTS: usize = 30;

impl Supervisor {
    pub fn start(bin: &Path, env: HashMap<String, String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let current_pid = Arc::new(Mutex::new(None));
        let current_log = Arc::new(Mutex::new(None));
        let cl = current_log.clone();
        let (bin, s, e, l, c) = (
            bin.to_owned(),
            stop.clone(),
            exits.clone(),
            log.clone(),
            current_pid.clone(),
        );
        let thread = std::thread::spawn(move || {
            for start in 0..MAX_STARTS {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let mut p = AgentProcess::spawn_bin(&bin, &["run"], &env);
                *c.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.pid());
                *cl.lock().unwrap_or_else(|p| p.into_inner()) = Some(p.log_handle());
                let status = loop {
                    if let Some(st) = p.wait_exit(Duration::from_millis(50)) {
                        break Some(st);
                    }
                    if s.load(Ordering::SeqCst) {
                        break p.terminate(Duration::from_secs(10));
                    }
                };
                let mut lines = p.log();
                lines.insert(0, format!("--- start {start} ---"));
                l.lock().unwrap_or_else(|p| p.into_inner()).extend(lines);
                *cl.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if let Some(st) = status {
                    e.lock().unwrap_or_else(|p| p.into_inner()).push(st);
                }
                if s.load(Ordering::SeqCst) {
                    return;
                }
                // systemd's RestartSec.
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            exits,
            log,
            current_pid,
            current_log,
            thread: Some(thread),
        }
    }

    /// Exit statuses so far, oldest first.
    pub fn exits(&self) -> Vec<ExitStatus> {
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until at least `n` exits happened.
    pub fn wait_exits(&self, n: usize, timeout: Duration) -> Vec<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let e = self.exits();
            if e.len() >= n {
                return e;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out after {timeout:?} waiting for {n} exits; log:\n{}",
            self.log().join("\n")
        );
    }

    /// Stderr of every finished run, each after a `--- start N ---` line,
    /// then the running agent's so far (after `--- running ---`).
    pub fn log(&self) -> Vec<String> {
        let mut lines = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let current = self
            .current_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(running) = current {
            lines.push("--- running ---".into());
            lines.extend(
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
        }
        lines
    }

    /// Stops restarting and terminates the running agent.
    pub fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.log()
    }

    pub fn pid(&self) -> Option<u32> {
        *self.current_pid.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).expect("reading for sha256"),
    ))
}

/// A release archive `rakkr-recorder-agent-<v>-<target>.tar.gz` of `bin`, built with tar(1).
pub fn release_tarball(dir: &Path, bin: &Path, version: &str, target: &str) -> PathBuf {
    let name = format!("rakkr-recorder-agent-{version}-{target}");
    let stage = dir.join(&name);
    std::fs::create_dir_all(&stage).expect("stage dir");
    std::fs::copy(bin, stage.join("rakkr-recorder-agent")).expect("copy into stage");
    let out = dir.join(format!("{name}.tar.gz"));
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-czf")
        .arg(&out)
        .arg(&name)
        .status()
        .expect("running tar");
    assert!(st.success(), "tar failed");
    out
}

/// A release signing key made for the tests (minisign, like the release
/// pipeline's); agents trust it through `update.trusted_keys`, which their
/// development builds honor.
pub struct ReleaseKey {
    public: String,
    secret: minisign::SecretKey,
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseKey")
            .field("public", &self.public)
            .finish()
    }
}

impl ReleaseKey {
    pub fn new() -> Self {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("minisign keygen");
        Self {
            public: kp.pk.to_base64(),
            secret: kp.sk,
        }
    }

    /// One key per test process.
    pub fn shared() -> &'static ReleaseKey {
        static KEY: OnceLock<ReleaseKey> = OnceLock::new();
        KEY.get_or_init(ReleaseKey::new)
    }

    /// The public key, base64 (the second line of a minisign `.pub`).
    pub fn public(&self) -> &str {
        &self.public
    }

    /// A `.minisig` of `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        minisign::sign(
            None,
            &self.secret,
            std::io::Cursor::new(data),
            Some("rakkr test release"),
            Some("signature from the test release key"),
        )
        .expect("minisign sign")
        .into_string()
    }
}

impl Default for ReleaseKey {
    fn default() -> Self {
        Self::new()
    }
}

/// A signed release as the release pipeline lays it out in one directory.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    /// `rakkr-recorder-agent-<v>-<target>.tar.gz` holding the binary.
    pub archive: PathBuf,
    pub manifest_path: PathBuf,
    pub signature_path: PathBuf,
    pub manifest: String,
    pub signature: String,
}

/// Packs `bin` as release `version` for `target` into `dir` (made if
/// missing) and writes `release-manifest.json` (the release script's
/// format) and its signature by `key`.
pub fn signed_release(
    key: &ReleaseKey,
    dir: &Path,
    bin: &Path,
    version: &str,
    target: &str,
) -> SignedRelease {
    std::fs::create_dir_all(dir).expect("release dir");
    let archive = release_tarball(dir, bin, version, target);
    let manifest = release_manifest(version, target, &archive, bin);
    signed_manifest(key, dir, archive, manifest)
}

/// `release-manifest.json` text listing `archive` and `bin` for `target`.
pub fn release_manifest(version: &str, target: &str, archive: &Path, bin: &Path) -> String {
    let size = |p: &Path| std::fs::metadata(p).expect("artifact size").len();
    let mut targets = serde_json::Map::new();
    targets.insert(
        target.to_owned(),
        serde_json::json!({
            "archive": archive.file_name().expect("archive name").to_string_lossy(),
            "archiveSha256": sha256_hex(archive),
            "archiveSize": size(archive),
            "binarySha256": sha256_hex(bin),
            "binarySize": size(bin),
        }),
    );
    let m = serde_json::json!({
        "version": version,
        "gitRevision": "0123456789abcdef0123456789abcdef01234567",
        "sourceDateEpoch": 1_764_000_000,
        "targets": targets,
    });
    serde_json::to_string_pretty(&m).expect("manifest json") + "\n"
}

/// Writes `manifest` and its signature by `key` beside `archive` in `dir`.
pub fn signed_manifest(
    key: &ReleaseKey,
    dir: &Path,
    archive: PathBuf,
    manifest: String,
) -> SignedRelease {
    let manifest_path = dir.join("release-manifest.json");
    let signature_path = dir.join("release-manifest.json.minisig");
    let signature = key.sign(manifest.as_bytes());
    std::fs::write(&manifest_path, &manifest).expect("writing the manifest");
    std::fs::write(&signature_path, &signature).expect("writing the signature");
    SignedRelease {
        archive,
        manifest_path,
        signature_path,
        manifest,
        signature,
    }
}
