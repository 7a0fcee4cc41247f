//! Self-update with real binaries: an agent stamped with an older release
//! runs from `<tmp>/opt/rakkr/bin` under a supervisor that plays systemd;
//! the reference controller streams a newer (or a broken) release to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rakkr_e2e::update::{self, NEW, OLD, Supervisor, sha256_hex};
use rakkr_e2e::{TestPki, agent::agent_env, init_logging, start_controller, wait_for};
use rakkr_protocol::controller::{Artifact, Controller, ControllerEvent, ControllerHandle};
use rakkr_protocol::{
    CommandBody, EventBody, FailureCode, Outcome, Reply, UpdateAck, UpdateFailure, UpdateOffer,
    UpdateSource,
};
use tokio::sync::broadcast;

const NODE: &str = "node-upd";
/// Bound for a restart cycle (stop, start, reconnect).
const R: Duration = Duration::from_secs(60);

pub(crate) struct Rig {
    pub pki: TestPki,
    pub ctl: Controller,
    pub h: ControllerHandle,
    pub events: broadcast::Receiver<ControllerEvent>,
    pub root: tempfile::TempDir,
    pub installed: PathBuf,
    pub sup: Supervisor,
    /// The node's target triple (from its Hello).
    pub target: String,
}

/// A controller and the OLD agent (installed at `<tmp>/opt/rakkr/bin`), connected.
pub(crate) async fn rig(extra: &[(&str, &str)]) -> Rig {
    init_logging();
    let old = update::stamped(OLD, false);
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |c| {
        c.heartbeat = Duration::from_millis(500)
    })
    .await;
    let h = ctl.handle();
    let mut events = h.subscribe();
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    pki.node_trust(&state, NODE, rakkr_protocol::devcerts::Validity::days(30));
    let installed = update::install_dir(root.path(), &old);
    let mut env: HashMap<String, String> = agent_env(&state, ctl.local_addr());
    env.extend(
        [
            ("RAKKR_UPDATE_STABLE_SECONDS", "1"),
            ("RAKKR_UPDATE_PROBATION_SECONDS", "15"),
            ("RAKKR_STORAGE_MIN_FREE_MB", "16"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "8"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let sup = Supervisor::start(&installed, env);
    let target = connected(&mut events, OLD).await;
    Rig {
        pki,
        ctl,
        h,
        events,
        root,
        installed,
        sup,
        target,
    }
}

/// Waits for the node to connect reporting `version`; returns its target.
pub(crate) async fn connected(
    events: &mut broadcast::Receiver<ControllerEvent>,
    version: &str,
) -> String {
    wait_for(events, R, &format!("Connected as {version}"), |e| match e {
        ControllerEvent::Connected { hello, .. } if hello.agent_version == version => {
            Some(hello.build_target.clone())
        }
        _ => None,
    })
    .await
}

/// Waits for an event body accepted by `pred`.
pub(crate) async fn event<T>(
    events: &mut broadcast::Receiver<ControllerEvent>,
    what: &str,
    mut pred: impl FnMut(&EventBody) -> Option<T>,
) -> T {
    wait_for(events, R, what, |e| match e {
        ControllerEvent::Event {
            event,
            duplicate: false,
            ..
        } => pred(&event.body),
        _ => None,
    })
    .await
}

pub(crate) fn offer(r: &Rig, bin: &Path, version: &str, transfer: &str) -> UpdateOffer {
    UpdateOffer {
        version: version.into(),
        target: r.target.clone(),
        size: std::fs::metadata(bin).unwrap().len(),
        sha256: sha256_hex(bin),
        source: UpdateSource::Stream {
            transfer_id: transfer.into(),
        },
        force: false,
        allow_downgrade: false,
    }
}

fn publish(h: &ControllerHandle, id: &str, path: &Path, cut_at: Option<u64>) {
    h.publish_artifact(
        id,
        Artifact {
            bytes: Arc::new(std::fs::read(path).unwrap()),
            cut_at,
        },
    );
}

pub(crate) async fn command(h: &ControllerHandle, body: CommandBody) -> Outcome {
    h.command(NODE, body, crate::T)
        .await
        .expect("command answered")
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_update_of_a_release_archive_comes_back_as_the_new_version() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let old_bytes = std::fs::read(&r.installed).unwrap();
    let tgz = update::release_tarball(r.root.path(), &new, NEW, &r.target);
    publish(&r.h, "t-archive", &tgz, None);
    let out = command(&r.h, CommandBody::Update(offer(&r, &tgz, NEW, "t-archive"))).await;
    assert_eq!(out, Outcome::Done(Reply::Update(UpdateAck::Started)));
    event(&mut r.events, "UpdateInstalled", |b| match b {
        EventBody::UpdateInstalled { version, previous } => {
            assert_eq!((version.as_str(), previous.as_str()), (NEW, OLD));
            Some(())
        }
        _ => None,
    })
    .await;
    connected(&mut r.events, NEW).await;
    event(&mut r.events, "UpdateCommitted", |b| {
        matches!(b, EventBody::UpdateCommitted { version, .. } if version == NEW).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        std::fs::read(&new).unwrap()
    );
    let previous = r.installed.with_file_name("rakkr-recorder-agent.previous");
    assert_eq!(
        std::fs::read(&previous).unwrap(),
        old_bytes,
        "the previous binary is kept"
    );
    // The old process stopped cleanly to be restarted (exit 75).
    assert_eq!(r.sup.exits().first().and_then(|s| s.code()), Some(75));
    // The same offer again: already installed, nothing happens.
    let again = command(&r.h, CommandBody::Update(offer(&r, &tgz, NEW, "t-archive"))).await;
    assert_eq!(
        again,
        Outcome::Done(Reply::Update(UpdateAck::AlreadyInstalled))
    );
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_transfer_resumes_at_its_offset() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let size = std::fs::metadata(&new).unwrap().len();
    let cut = size / 2;
    publish(&r.h, "t-cut", &new, Some(cut));
    let out = command(&r.h, CommandBody::Update(offer(&r, &new, NEW, "t-cut"))).await;
    assert_eq!(out, Outcome::Done(Reply::Update(UpdateAck::Started)));
    // The connection drops at the cut; the agent reconnects and asks again
    // from the first byte it does not have, never from 0.
    wait_for(&mut r.events, R, "the cut", |e| {
        matches!(e, ControllerEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let chunk = u64::from(rakkr_protocol::MAX_CHUNK_LEN);
    let mut resumed_at = None;
    wait_for(
        &mut r.events,
        R,
        "fetches after the reconnect",
        |e| match e {
            ControllerEvent::Fetched { offset, .. } => {
                let first = resumed_at.get_or_insert(*offset);
                *first = (*first).min(*offset);
                (*offset + chunk >= size).then_some(())
            }
            _ => None,
        },
    )
    .await;
    let resumed_at = resumed_at.unwrap();
    // The cut closes the link at the first request at or past `cut`
    // (the agent asks for MAX_CHUNK_LEN-sized chunks): everything before
    // it had arrived.
    let cut_request = cut.next_multiple_of(chunk);
    assert!(
        resumed_at > 0 && resumed_at <= cut_request,
        "resumed at {resumed_at}, cut at {cut_request}"
    );
    connected(&mut r.events, NEW).await;
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        std::fs::read(&new).unwrap()
    );
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streamed_artifacts_are_refused_and_the_binary_is_untouched() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let before = std::fs::read(&r.installed).unwrap();
    // Wrong checksum.
    publish(&r.h, "t-sum", &new, None);
    let mut o = offer(&r, &new, NEW, "t-sum");
    o.sha256 = "00".repeat(32);
    assert_eq!(
        command(&r.h, CommandBody::Update(o)).await,
        Outcome::Done(Reply::Update(UpdateAck::Started))
    );
    event(&mut r.events, "UpdateFailed checksum", |b| match b {
        EventBody::UpdateFailed { kind, reason, .. } => {
            assert_eq!(*kind, UpdateFailure::Checksum, "{reason}");
            Some(())
        }
        _ => None,
    })
    .await;
    // Truncated: the controller holds less than the offer says.
    let half = r.root.path().join("half");
    let bytes = std::fs::read(&new).unwrap();
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    publish(&r.h, "t-half", &half, None);
    let mut o = offer(&r, &new, NEW, "t-half");
    o.size = bytes.len() as u64;
    command(&r.h, CommandBody::Update(o)).await;
    event(&mut r.events, "UpdateFailed size", |b| match b {
        EventBody::UpdateFailed { kind, reason, .. } => {
            assert_eq!(*kind, UpdateFailure::Size, "{reason}");
            Some(())
        }
        _ => None,
    })
    .await;
    // Older than installed, and another architecture: refused before any transfer.
    let old = update::stamped(OLD, false);
    let mut o = offer(&r, &old, "2026.11.22-7", "t-none");
    match command(&r.h, CommandBody::Update(o.clone())).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument);
            assert!(f.message.contains("downgrade refused"), "{}", f.message);
        }
        other => panic!("downgrade accepted: {other:?}"),
    }
    o.version = NEW.into();
    o.target = "aarch64-unknown-linux-musl".into();
    match command(&r.h, CommandBody::Update(o)).await {
        Outcome::Failed(f) => assert!(f.message.contains("wrong architecture"), "{}", f.message),
        other => panic!("wrong target accepted: {other:?}"),
    }
    assert_eq!(std::fs::read(&r.installed).unwrap(), before);
    assert!(r.sup.exits().is_empty(), "the agent never restarted");
    drop(r.ctl);
}

/// Updates to the faulty NEW build and waits for the rollback report.
async fn rolled_back_with(fault_env: &[(&str, &str)], why: &str) {
    let mut r = rig(fault_env).await;
    let new = update::stamped(NEW, true);
    let old_bytes = std::fs::read(&r.installed).unwrap();
    publish(&r.h, "t-bad", &new, None);
    command(&r.h, CommandBody::Update(offer(&r, &new, NEW, "t-bad"))).await;
    event(&mut r.events, "UpdateInstalled", |b| {
        matches!(b, EventBody::UpdateInstalled { .. }).then_some(())
    })
    .await;
    let reason = event(&mut r.events, "UpdateRolledBack", |b| match b {
        EventBody::UpdateRolledBack {
            version,
            restored,
            reason,
        } => {
            assert_eq!((version.as_str(), restored.as_str()), (NEW, OLD));
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert!(reason.contains(why), "reason {reason:?} should say {why:?}");
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        old_bytes,
        "the previous binary is back"
    );
    let failed = r.installed.with_file_name("rakkr-recorder-agent.failed");
    assert_eq!(
        std::fs::read(&failed).unwrap(),
        std::fs::read(&new).unwrap()
    );
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_that_exits_at_start_is_rolled_back_and_the_controller_hears_why() {
    rolled_back_with(
        &[
            ("RAKKR_FAULT", "exit-at-start"),
            ("RAKKR_UPDATE_MAX_STARTS", "2"),
        ],
        "without passing probation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_that_cannot_capture_its_device_is_rolled_back_though_welcomed() {
    // Welcomed by the controller, but its configured device never delivers
    // audio: the audio health gate rolls it back and names the device.
    rolled_back_with(
        &[
            ("RAKKR_CAPTURE_DEVICE", "no-such-device"),
            ("RAKKR_UPDATE_PROBATION_SECONDS", "4"),
        ],
        "no-such-device",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_that_cannot_connect_is_rolled_back_and_the_controller_hears_why() {
    rolled_back_with(
        &[
            ("RAKKR_FAULT", "no-connect"),
            ("RAKKR_UPDATE_PROBATION_SECONDS", "3"),
        ],
        "not welcomed",
    )
    .await;
}

/// Runs `<installed> update …` on a state directory without a daemon.
fn cli(installed: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    let mut env = HashMap::new();
    env.insert("RAKKR_STATE_DIR".to_owned(), state.display().to_string());
    let mut cmd = rakkr_e2e::agent::bin_command(installed, &env);
    cmd.arg("update").args(args);
    rakkr_e2e::agent::retry_busy(|| cmd.output()).expect("running update")
}

#[test]
fn cli_refusals_have_their_exit_codes_and_leave_the_binary_untouched() {
    let old = update::stamped(OLD, false);
    let new = update::stamped(NEW, true);
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    // Installed: NEW, through a symlink (as an Ansible role may lay it out).
    let installed = update::install_dir(root.path(), &new);
    let link = root.path().join("agent-link");
    std::os::unix::fs::symlink(&installed, &link).unwrap();
    let before = std::fs::read(&installed).unwrap();
    let hex = |p: &Path| sha256_hex(p);
    let apply = |artifact: &Path, sha: &str, extra: &[&str]| {
        let a = artifact.display().to_string();
        let mut args = vec!["apply", "--artifact", a.as_str(), "--sha256", sha];
        args.extend_from_slice(extra);
        let out = cli(&link, &state, &args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let check = |what: &str, got: (Option<i32>, String), code: i32, says: &str| {
        assert_eq!(got.0, Some(code), "{what}: {}", got.1);
        assert!(
            got.1.contains(says),
            "{what}: {:?} should say {says:?}",
            got.1
        );
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            before,
            "{what} touched the binary"
        );
    };
    // Wrong checksum.
    check(
        "wrong checksum",
        apply(&old, &"ab".repeat(32), &[]),
        10,
        "checksum mismatch",
    );
    // Truncated release archive (the hash is the full one's).
    let tgz = update::release_tarball(root.path(), &old, OLD, "x86_64-unknown-linux-musl");
    let full = std::fs::read(&tgz).unwrap();
    let cut = root.path().join("cut.tar.gz");
    std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
    check(
        "truncated",
        apply(&cut, &hex(&tgz), &[]),
        10,
        "checksum mismatch",
    );
    // ...and one whose hash matches its truncated bytes: not a readable archive.
    check(
        "truncated, own hash",
        apply(&cut, &hex(&cut), &[]),
        15,
        "not a readable release archive",
    );
    // An aarch64 binary: this binary with its ELF machine set to aarch64 (183)
    // (or x86_64 on an aarch64 host).
    let mut foreign = std::fs::read(&old).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    foreign[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign_path = root.path().join("foreign");
    std::fs::write(&foreign_path, &foreign).unwrap();
    check(
        "wrong architecture",
        apply(&foreign_path, &hex(&foreign_path), &[]),
        11,
        "wrong architecture",
    );
    // Older than installed.
    check(
        "older",
        apply(&old, &hex(&old), &[]),
        12,
        "downgrade refused",
    );
    // Not an executable.
    let script = root.path().join("script");
    std::fs::write(
        &script,
        "#!/bin/sh\necho rakkr-recorder-agent 2099.01.01-1\n",
    )
    .unwrap();
    check(
        "script",
        apply(&script, &hex(&script), &[]),
        15,
        "not an ELF executable",
    );
    // The same version: nothing to do, exit 0.
    let same = apply(&new, &hex(&new), &[]);
    assert_eq!(same.0, Some(0), "{}", same.1);
    // A downgrade asked for explicitly goes in, keeps NEW as previous, and
    // rolls back with `update rollback`; `--sha256-file` takes sha256sum format.
    let sum = root.path().join("old.sha256");
    std::fs::write(&sum, format!("{}  rakkr-recorder-agent\n", hex(&old))).unwrap();
    let a = old.display().to_string();
    let s = sum.display().to_string();
    let out = cli(
        &link,
        &state,
        &[
            "apply",
            "--artifact",
            &a,
            "--sha256-file",
            &s,
            "--allow-downgrade",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&old).unwrap()
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink stays"
    );
    let status = cli(&link, &state, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["installedVersion"], OLD, "{v}");
    assert_eq!(v["previousVersion"], NEW, "{v}");
    assert_eq!(v["lastUpdate"]["phase"], "probation", "{v}");
    let out = cli(&link, &state, &["rollback"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&installed).unwrap(), before);
    let status = cli(&link, &state, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["installedVersion"], NEW, "{v}");
    assert_eq!(v["lastUpdate"]["phase"], "rolledBack", "{v}");
}
