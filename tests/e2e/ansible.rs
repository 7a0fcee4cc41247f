//! packaging/ansible: the role's five actions run by a real
//! `ansible-playbook` (PyPI ansible-core, installed by .ci/setup) with a
//! local connection against a temp root (a copy of a minimal Debian tree),
//! where systemd is not needed. The agent is the real binary, shipped in a
//! release-layout archive with its `.sha256`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rakkr_devpki::Validity;
use rakkr_e2e::TestPki;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
}

/// ansible-playbook from the CI venv, installed there if missing.
fn ansible_playbook() -> PathBuf {
    let venv = cache().join("rakkr-ci/venv");
    let bin = venv.join("bin/ansible-playbook");
    if !bin.exists() {
        if !venv.join("bin/pip").exists() {
            let ok = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap();
            assert!(ok.success(), "python3 -m venv");
        }
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "ansible-core==2.17.14"])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install ansible-core");
    }
    bin
}

/// A throwaway copy of the cached minbase chroot (created once).
fn temp_root(into: &Path) -> PathBuf {
    let base = std::env::var_os("RAKKR_RELEASE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("rakkr-release"))
        .join("chroot-bookworm-minbase");
    let script = format!(
        "set -e; . '{}'; ensure_minbase_chroot '{}'",
        repo().join("packaging/lib/chroot.sh").display(),
        base.display()
    );
    assert!(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
    let root = into.join("root");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    for leftover in ["opt/rakkr", "srv/rakkr-verify", "etc/asound.conf"] {
        let _ = std::fs::remove_dir_all(root.join(leftover));
        let _ = std::fs::remove_file(root.join(leftover));
    }
    root
}

/// A release archive of the agent binary: `<name>/rakkr-recorder-agent`
/// inside `<name>.tar.gz`, and `<name>.tar.gz.sha256` beside it, with a
/// release manifest signed by the shared test release key.
fn release_archive(dir: &Path) -> PathBuf {
    let name = format!(
        "rakkr-recorder-agent-test-{}-unknown-linux-musl",
        std::env::consts::ARCH
    );
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join(&name)).unwrap();
    std::fs::copy(
        rakkr_e2e::agent_bin(),
        stage.join(&name).join("rakkr-recorder-agent"),
    )
    .unwrap();
    let archive = dir.join(format!("{name}.tar.gz"));
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&stage)
        .arg(&name)
        .status()
        .unwrap();
    assert!(ok.success());
    let sha = hex::encode(Sha256::digest(std::fs::read(&archive).unwrap()));
    std::fs::write(
        dir.join(format!("{name}.tar.gz.sha256")),
        format!("{sha}  {name}.tar.gz\n"),
    )
    .unwrap();
    let bin = rakkr_e2e::agent_bin();
    let target = rakkr_e2e::agent::target_of(&bin);
    let version =
        String::from_utf8_lossy(&Command::new(&bin).arg("--version").output().unwrap().stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
    let manifest = rakkr_e2e::update::release_manifest(&version, &target, &archive, &bin);
    rakkr_e2e::update::signed_manifest(
        rakkr_e2e::update::ReleaseKey::shared(),
        dir,
        archive.clone(),
        manifest,
    );
    archive
}

struct Play {
    bin: PathBuf,
    inventory: PathBuf,
    root: PathBuf,
}

impl Play {
    fn run(&self, action: &str, extra: &[(&str, String)]) -> Output {
        let mut c = Command::new(&self.bin);
        c.current_dir(repo().join("packaging/ansible"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_HOST_KEY_CHECKING", "0")
            .arg("-i")
            .arg(&self.inventory)
            .arg("playbook.yml")
            .args(["-e", &format!("rakkr_action={action}")])
            .args(["-e", &format!("rakkr_root={}", self.root.display())])
            .args(["-e", "rakkr_become=false"]);
        for (k, v) in extra {
            c.args(["-e", &format!("{k}={v}")]);
        }
        c.output().unwrap()
    }
}

fn recap(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("localhost ") && l.contains("ok="))
        .unwrap_or_default()
        .to_owned();
    (line, text)
}

fn uid_in(root: &Path, user: &str) -> u32 {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {user} in {}/etc/passwd", root.display()))
}

#[test]
fn the_ansible_role_runs_all_five_actions_against_a_temp_root() {
    if !rakkr_e2e::requires(
        "root (the role runs against a chroot)",
        rakkr_e2e::is_root(),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inventory = tmp.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        "[rakkr_nodes]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n",
    )
    .unwrap();
    let play = Play {
        bin: ansible_playbook(),
        inventory,
        root: temp_root(tmp.path()),
    };
    let root = &play.root;
    let archive = release_archive(tmp.path());
    let local = [
        ("rakkr_agent_source", "local".to_owned()),
        ("rakkr_binary_src", archive.display().to_string()),
    ];

    // install_dependencies: user (in audio), directories, default config; twice = no change.
    for (n, want) in [(1, "changed=4"), (2, "changed=0")] {
        let (line, text) = recap(&play.run("install_dependencies", &[]));
        assert!(
            line.contains("failed=0") && line.contains(want),
            "run {n}: {text}"
        );
    }
    let uid = uid_in(root, "rakkr");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("audio:") && l.ends_with("rakkr")),
        "rakkr not in audio: {group}"
    );
    let state = root.join("var/lib/rakkr/agent");
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), uid);
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    assert!(root.join("etc/rakkr/recorder-agent.toml").is_file());
    // This development build trusts the test release key from its config.
    let mut config = std::fs::read_to_string(root.join("etc/rakkr/recorder-agent.toml")).unwrap();
    config.push_str(&format!(
        "\n[update]\ntrusted_keys = [\"{}\"]\n",
        rakkr_e2e::update::ReleaseKey::shared().public()
    ));
    std::fs::write(root.join("etc/rakkr/recorder-agent.toml"), config).unwrap();

    // update_binary with a wrong checksum: refused, nothing installed.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let bad_archive = bad.join(archive.file_name().unwrap());
    std::fs::copy(&archive, &bad_archive).unwrap();
    std::fs::write(
        bad.join(format!(
            "{}.sha256",
            bad_archive.file_name().unwrap().to_string_lossy()
        )),
        format!("{}  x\n", "0".repeat(64)),
    )
    .unwrap();
    let out = play.run(
        "update_binary",
        &[
            ("rakkr_agent_source", "local".to_owned()),
            ("rakkr_binary_src", bad_archive.display().to_string()),
        ],
    );
    let (line, text) = recap(&out);
    assert!(!out.status.success() && line.contains("failed=1"), "{text}");
    assert!(text.contains("checksum mismatch"), "{text}");
    let installed = root.join("opt/rakkr/bin/rakkr-recorder-agent");
    assert!(!installed.exists(), "a refused update must install nothing");

    // update_binary: installed by the agent's own `update apply`, owned by rakkr; again = no change.
    let (line, text) = recap(&play.run("update_binary", &local));
    assert!(line.contains("failed=0"), "{text}");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(rakkr_e2e::agent_bin()).unwrap()
    );
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), uid);
    let (line, text) = recap(&play.run("update_binary", &local));
    assert!(
        line.contains("failed=0") && text.contains("nothing to do"),
        "{text}"
    );
    assert!(!text.contains("changed: [localhost] => (item") && line.contains("failed=0"));

    // update_binary of a release signed by a key the agent does not trust:
    // the installed agent refuses it (exit 17) and nothing changes.
    let sha = hex::encode(Sha256::digest(std::fs::read(&bad_archive).unwrap()));
    std::fs::write(
        bad.join(format!(
            "{}.sha256",
            bad_archive.file_name().unwrap().to_string_lossy()
        )),
        format!("{sha}  x\n"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(tmp.path().join("release-manifest.json")).unwrap();
    rakkr_e2e::update::signed_manifest(
        &rakkr_e2e::update::ReleaseKey::new(),
        &bad,
        bad_archive.clone(),
        manifest,
    );
    let installed_before = std::fs::read(&installed).unwrap();
    let out = play.run(
        "update_binary",
        &[
            ("rakkr_agent_source", "local".to_owned()),
            ("rakkr_binary_src", bad_archive.display().to_string()),
            ("rakkr_allow_downgrade", "true".to_owned()),
        ],
    );
    let (line, text) = recap(&out);
    assert!(!out.status.success() && line.contains("failed=1"), "{text}");
    assert!(
        text.contains("exit 17") && text.contains("does not trust"),
        "{text}"
    );
    assert_eq!(std::fs::read(&installed).unwrap(), installed_before);

    // smoke_check: --print-inventory, in the controller's shape.
    let (line, text) = recap(&play.run("smoke_check", &[]));
    assert!(line.contains("failed=0"), "{text}");
    assert!(text.contains("audio device(s)"), "{text}");

    // rotate_trust: a wrong key is refused and nothing is written; a good identity is installed.
    let pki = TestPki::new();
    let node = pki
        .ca
        .issue_node("node-ansible", Validity::days(30))
        .unwrap();
    let other = pki
        .ca
        .issue_node("node-ansible", Validity::days(30))
        .unwrap();
    let files = tmp.path().join("trust-src");
    std::fs::create_dir_all(&files).unwrap();
    for (name, body) in [
        ("ca.pem", &pki.ca.cert_pem),
        ("node.pem", &node.cert_pem),
        ("node.key", &node.key_pem),
        ("other.key", &other.key_pem),
    ] {
        std::fs::write(files.join(name), body).unwrap();
    }
    let trust_vars = |key: &str| {
        vec![
            (
                "rakkr_trust_ca_src",
                files.join("ca.pem").display().to_string(),
            ),
            (
                "rakkr_trust_cert_src",
                files.join("node.pem").display().to_string(),
            ),
            ("rakkr_trust_key_src", files.join(key).display().to_string()),
        ]
    };
    let out = play.run("rotate_trust", &trust_vars("other.key"));
    let (_, text) = recap(&out);
    assert!(!out.status.success() && text.contains("exit 21"), "{text}");
    assert!(!state.join("trust").exists(), "a refusal writes nothing");
    let (line, text) = recap(&play.run("rotate_trust", &trust_vars("node.key")));
    assert!(
        line.contains("failed=0") && text.contains("CN=node-ansible"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("trust/node.pem")).unwrap(),
        node.cert_pem
    );
    let key = state.join("trust/current/node.key");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&key).unwrap().uid(),
        uid,
        "the daemon's user must own the key"
    );
    assert!(
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .all(
                |e| !e.file_name().to_string_lossy().starts_with("rakkr-trust-")
                    || !e.path().join("node.key").exists()
            ),
        "the staged key must be removed"
    );

    // restart_service: no systemd in a temp root; says so, fails nothing.
    let (line, text) = recap(&play.run("restart_service", &[]));
    assert!(
        line.contains("failed=0") && text.contains("no systemd to restart"),
        "{text}"
    );

    // An action that is not one of the five.
    let out = play.run("reboot_everything", &[]);
    assert!(!out.status.success());
    assert!(recap(&out).1.contains("is not one of"));
}
