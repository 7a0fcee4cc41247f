//! Self-update with real binaries: an agent stamped with an older release
//! runs from `<tmp>/opt/rakkr/bin` under a supervisor that plays systemd;
//! the reference controller streams a newer (or a broken) release to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rakkr_controller::{Artifact, Controller, ControllerEvent, ControllerHandle};
use rakkr_e2e::update::{self, NEW, OLD, ReleaseKey, Supervisor, sha256_hex};
use rakkr_e2e::{TestPki, agent::agent_env, init_logging, start_controller, wait_for};
use rakkr_protocol::{
    CommandBody, EventBody, FailureCode, Outcome, Reply, SignedUpdate, UpdateAck, UpdateFailure,
    UpdateOffer, UpdateSource,
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

/// A controller and the OLD agent (installed at `<tmp>/opt/rakkr/bin`),
/// connected. The agent trusts the shared test release key, and a program
/// it runs finds `<tmp>/MARKER` in `RAKKR_TEST_MARKER`.
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
    pki.node_trust(&state, NODE, rakkr_devpki::Validity::days(30));
    let installed = update::install_dir(root.path(), &old);
    let mut env: HashMap<String, String> = agent_env(&state, ctl.local_addr());
    env.extend(
        [
            ("RAKKR_UPDATE_STABLE_SECONDS", "1"),
            ("RAKKR_UPDATE_PROBATION_SECONDS", "15"),
            ("RAKKR_STORAGE_MIN_FREE_MB", "16"),
            ("RAKKR_STORAGE_STOP_FREE_MB", "8"),
            ("RAKKR_UPDATE_TRUSTED_KEYS", ReleaseKey::shared().public()),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.insert(
        "RAKKR_TEST_MARKER".into(),
        root.path().join("MARKER").display().to_string(),
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

/// A release of `bin` as `version` (archive, manifest, signature by the
/// shared test key) in a fresh directory under the rig's root.
pub(crate) fn release(r: &Rig, bin: &Path, version: &str) -> update::SignedRelease {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = r.root.path().join(format!("release-{version}-{n}"));
    update::signed_release(ReleaseKey::shared(), &dir, bin, version, &r.target)
}

/// `UpdateSigned` for `offer` with `rel`'s manifest and signature.
pub(crate) fn signed(rel: &update::SignedRelease, offer: UpdateOffer) -> CommandBody {
    CommandBody::UpdateSigned(SignedUpdate {
        offer,
        release_manifest: rel.manifest.clone(),
        signature: rel.signature.clone(),
    })
}

pub(crate) fn publish(h: &ControllerHandle, id: &str, path: &Path, cut_at: Option<u64>) {
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
    let rel = release(&r, &new, NEW);
    let tgz = rel.archive.clone();
    publish(&r.h, "t-archive", &tgz, None);
    let out = command(&r.h, signed(&rel, offer(&r, &tgz, NEW, "t-archive"))).await;
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
    let again = command(&r.h, signed(&rel, offer(&r, &tgz, NEW, "t-archive"))).await;
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
    let rel = release(&r, &new, NEW);
    let out = command(&r.h, signed(&rel, offer(&r, &new, NEW, "t-cut"))).await;
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
    let rel = release(&r, &new, NEW);
    // The controller streams other bytes than the signed binary (same
    // size): the transfer check fails, nothing is unpacked or run.
    let mut other = std::fs::read(&new).unwrap();
    let mid = other.len() / 2;
    other[mid] ^= 0xff;
    let other_path = r.root.path().join("other");
    std::fs::write(&other_path, &other).unwrap();
    publish(&r.h, "t-sum", &other_path, None);
    assert_eq!(
        command(&r.h, signed(&rel, offer(&r, &new, NEW, "t-sum"))).await,
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
    command(&r.h, signed(&rel, offer(&r, &new, NEW, "t-half"))).await;
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
    match command(&r.h, signed(&rel, o.clone())).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument);
            assert!(f.message.contains("downgrade refused"), "{}", f.message);
        }
        other => panic!("downgrade accepted: {other:?}"),
    }
    o.version = NEW.into();
    o.target = "aarch64-unknown-linux-musl".into();
    match command(&r.h, signed(&rel, o)).await {
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
    let rel = release(&r, &new, NEW);
    command(&r.h, signed(&rel, offer(&r, &new, NEW, "t-bad"))).await;
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
