//! `update apply | status | rollback` from the command line: only signed
//! releases go in (exit 17 otherwise, and nothing offered is ever run), and
//! every other refusal has its exit code; none touches the installed binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rakkr_e2e::update::{self, NEW, OLD, ReleaseKey, sha256_hex};

/// Runs `<installed> update …` on a state directory without a daemon; the
/// agent trusts the shared test release key (a development build honors
/// `update.trusted_keys`), and offered programs leave a marker at `marker`.
fn cli(installed: &Path, state: &Path, marker: &Path, args: &[&str]) -> (Option<i32>, String) {
    let env = HashMap::from([
        ("RAKKR_STATE_DIR".to_owned(), state.display().to_string()),
        (
            "RAKKR_UPDATE_TRUSTED_KEYS".to_owned(),
            ReleaseKey::shared().public().to_owned(),
        ),
        ("RAKKR_TEST_MARKER".to_owned(), marker.display().to_string()),
    ]);
    let mut cmd = rakkr_e2e::agent::bin_command(installed, &env);
    cmd.arg("update").args(args);
    let out = rakkr_e2e::agent::retry_busy(|| cmd.output()).expect("running update");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A node with NEW installed through a symlink (as an Ansible role may lay
/// it out), and a scratch directory per release.
struct Node {
    root: tempfile::TempDir,
    installed: PathBuf,
    link: PathBuf,
    state: PathBuf,
    marker: PathBuf,
    before: Vec<u8>,
    target: String,
}

impl Node {
    fn new() -> Self {
        let new = update::stamped(NEW, true);
        let root = tempfile::tempdir().unwrap();
        let installed = update::install_dir(root.path(), &new);
        let link = root.path().join("agent-link");
        std::os::unix::fs::symlink(&installed, &link).unwrap();
        Self {
            state: root.path().join("state"),
            marker: root.path().join("MARKER"),
            before: std::fs::read(&installed).unwrap(),
            target: rakkr_e2e::agent::target_of(&new),
            root,
            installed,
            link,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn apply(&self, artifact: &Path, extra: &[&str]) -> (Option<i32>, String) {
        let a = artifact.display().to_string();
        let mut args = vec!["apply", "--artifact", a.as_str()];
        args.extend_from_slice(extra);
        cli(&self.link, &self.state, &self.marker, &args)
    }

    /// Asserts the exit code and message, and that the binary is untouched.
    fn refused(&self, what: &str, got: (Option<i32>, String), code: i32, says: &str) {
        assert_eq!(got.0, Some(code), "{what}: {}", got.1);
        assert!(
            got.1.contains(says),
            "{what}: {:?} should say {says:?}",
            got.1
        );
        assert_eq!(
            std::fs::read(&self.installed).unwrap(),
            self.before,
            "{what} touched the binary"
        );
    }

    /// `artifact` copied into a fresh release directory `name` with a
    /// manifest (listing `listed_archive` and `listed_binary`) signed by `key`.
    fn release(
        &self,
        name: &str,
        artifact: &Path,
        version: &str,
        listed: (&Path, &Path),
        key: &ReleaseKey,
    ) -> PathBuf {
        let dir = self.dir(name);
        let placed = dir.join(artifact.file_name().unwrap());
        std::fs::copy(artifact, &placed).unwrap();
        let m = update::release_manifest(version, &self.target, listed.0, listed.1);
        update::signed_manifest(key, &dir, placed.clone(), m);
        placed
    }

    fn ran(&self) -> bool {
        self.marker.exists()
    }
}

/// The marker program under an agent's file name.
fn marker_program(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("rakkr-recorder-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_rakkr-marker"), &p).unwrap();
    p
}

#[test]
fn an_unsigned_or_wrongly_signed_program_is_refused_with_17_and_never_run() {
    let n = Node::new();
    let key = ReleaseKey::shared();
    let program = marker_program(&n.dir("program"));
    let sha = sha256_hex(&program);
    // Nothing signed beside it.
    n.refused(
        "no manifest",
        n.apply(&program, &["--sha256", &sha]),
        17,
        "release-manifest.json does not exist",
    );
    // A manifest listing it, signed by a key the agent does not trust.
    let stranger = ReleaseKey::new();
    let p = n.release(
        "stranger",
        &program,
        "2099.01.01-1",
        (&program, &program),
        &stranger,
    );
    n.refused(
        "untrusted key",
        n.apply(&p, &["--sha256", &sha]),
        17,
        "which this agent does not trust",
    );
    // The right key, but the manifest changed after signing.
    let p = n.release(
        "altered",
        &program,
        "2099.01.01-1",
        (&program, &program),
        key,
    );
    let m = p.with_file_name("release-manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("2099.01.01-1", "2099.01.01-2")).unwrap();
    n.refused(
        "altered manifest",
        n.apply(&p, &["--sha256", &sha]),
        17,
        "does not verify",
    );
    // A genuine signed release that does not list this program.
    let new = update::stamped(NEW, true);
    let p = n.release("unlisted", &program, NEW, (&new, &new), key);
    n.refused("not listed", n.apply(&p, &[]), 17, "neither the archive");
    // A signature that is not a minisign signature at all.
    std::fs::write(p.with_file_name("release-manifest.json.minisig"), "garbage").unwrap();
    n.refused(
        "garbage signature",
        n.apply(&p, &[]),
        17,
        "not a minisign signature",
    );
    assert!(!n.ran(), "an unverified program was executed");
    // Control: the same program as the binary of a release signed with the
    // trusted key is run (its --version), so the marker would have shown
    // any execution. It reports another version than signed: refused.
    let p = n.release("control", &program, "2099.01.01-2", (&new, &program), key);
    n.refused("control", n.apply(&p, &[]), 15, "version mismatch");
    assert!(n.ran(), "the signed program was not run");
}

#[test]
fn signed_artifacts_still_meet_every_other_check_with_its_exit_code() {
    let n = Node::new();
    let key = ReleaseKey::shared();
    let old = update::stamped(OLD, false);
    let new = update::stamped(NEW, true);
    let tgz = update::release_tarball(&n.dir("pack"), &old, OLD, &n.target);
    // A transfer check that fails: the hash given is not the artifact's.
    let p = n.release("sum", &old, OLD, (&tgz, &old), key);
    n.refused(
        "wrong checksum",
        n.apply(&p, &["--sha256", &"ab".repeat(32)]),
        10,
        "checksum mismatch",
    );
    // A truncated archive is not the signed one.
    let full = std::fs::read(&tgz).unwrap();
    let cut = n.dir("cut").join("cut.tar.gz");
    std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
    let p = n.release("cut-release", &cut, OLD, (&tgz, &old), key);
    n.refused("truncated", n.apply(&p, &[]), 17, "neither the archive");
    // Signed as it is (a broken release): not a readable archive.
    let p = n.release("cut-signed", &cut, OLD, (&cut, &old), key);
    n.refused(
        "truncated, signed",
        n.apply(&p, &[]),
        15,
        "not a readable release archive",
    );
    // A signed archive whose binary is not the signed binary.
    let p = n.release("swapped", &tgz, OLD, (&tgz, &new), key);
    n.refused(
        "binary swapped",
        n.apply(&p, &[]),
        17,
        "the binary in the archive has SHA-256",
    );
    // An aarch64 binary: this binary with its ELF machine set to aarch64
    // (183) (or x86_64 on an aarch64 host), signed.
    let mut foreign = std::fs::read(&old).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    foreign[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign_path = n.dir("foreign-bin").join("rakkr-recorder-agent");
    std::fs::write(&foreign_path, &foreign).unwrap();
    let p = n.release("foreign", &foreign_path, OLD, (&tgz, &foreign_path), key);
    n.refused(
        "wrong architecture",
        n.apply(&p, &[]),
        11,
        "wrong architecture",
    );
    // A script, signed.
    let script = n.dir("script-bin").join("script");
    std::fs::write(
        &script,
        "#!/bin/sh\necho rakkr-recorder-agent 2099.01.01-1\n",
    )
    .unwrap();
    let p = n.release("script", &script, "2099.01.01-1", (&tgz, &script), key);
    n.refused("script", n.apply(&p, &[]), 15, "not an ELF executable");
    // The signed release is another version than asked for.
    let p = n.release("older", &tgz, OLD, (&tgz, &old), key);
    n.refused(
        "expect another version",
        n.apply(&p, &["--expect-version", NEW]),
        17,
        "the signed release is 2026.11.23-1",
    );
    // Older than installed.
    n.refused("older", n.apply(&p, &[]), 12, "downgrade refused");
    // The same version: nothing to do, exit 0.
    let same = n.release("same", &new, NEW, (&tgz, &new), key);
    let got = n.apply(&same, &[]);
    assert_eq!(got.0, Some(0), "{}", got.1);
    assert!(got.1.contains("nothing to do"), "{}", got.1);
}

#[test]
fn a_signed_downgrade_asked_for_goes_in_and_rolls_back() {
    let n = Node::new();
    let key = ReleaseKey::shared();
    let old = update::stamped(OLD, false);
    // Manifest and signature elsewhere (--release-manifest, --signature);
    // --sha256-file takes sha256sum format.
    let rel = update::signed_release(key, &n.dir("release"), &old, OLD, &n.target);
    let moved = n.dir("sigs");
    let (m, s) = (moved.join("m.json"), moved.join("m.sig"));
    std::fs::rename(&rel.manifest_path, &m).unwrap();
    std::fs::rename(&rel.signature_path, &s).unwrap();
    let sum = n.root.path().join("old.sha256");
    std::fs::write(&sum, format!("{}  x.tar.gz\n", sha256_hex(&rel.archive))).unwrap();
    let got = n.apply(
        &rel.archive,
        &[
            "--sha256-file",
            sum.to_str().unwrap(),
            "--release-manifest",
            m.to_str().unwrap(),
            "--signature",
            s.to_str().unwrap(),
            "--allow-downgrade",
        ],
    );
    assert_eq!(got.0, Some(0), "{}", got.1);
    assert!(got.1.contains("signed by release key"), "{}", got.1);
    assert_eq!(
        std::fs::read(&n.installed).unwrap(),
        std::fs::read(&old).unwrap()
    );
    assert!(
        std::fs::symlink_metadata(&n.link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink stays"
    );
    let status = |n: &Node| {
        let (code, out) = cli(&n.link, &n.state, &n.marker, &["status", "--json"]);
        assert_eq!(code, Some(0), "{out}");
        let json = &out[out.find('{').unwrap()..=out.rfind('}').unwrap()];
        serde_json::from_str::<serde_json::Value>(json).unwrap()
    };
    let v = status(&n);
    assert_eq!(v["installedVersion"], OLD, "{v}");
    assert_eq!(v["previousVersion"], NEW, "{v}");
    assert_eq!(v["lastUpdate"]["phase"], "probation", "{v}");
    let (code, out) = cli(&n.link, &n.state, &n.marker, &["rollback"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read(&n.installed).unwrap(), n.before);
    let v = status(&n);
    assert_eq!(v["installedVersion"], NEW, "{v}");
    assert_eq!(v["lastUpdate"]["phase"], "rolledBack", "{v}");
}
