//! Signed releases on the daemon: a controller alone (it holds the link's
//! key, not the release key) cannot make a node fetch, unpack or run a
//! program. Whatever the controller offers is refused unless the release
//! manifest's signature verifies with the node's release keys and lists the
//! offered artifact; the program offered leaves a marker if it ever runs.

use rakkr_controller::ControllerEvent;
use rakkr_e2e::update::{self, NEW, ReleaseKey};
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, UpdateFailure};

use crate::update::{command, event, offer, publish, release, rig, signed};

/// Expects a refusal at once (`InvalidArgument`) saying `says`.
fn refused(out: Outcome, what: &str, says: &str) {
    match out {
        Outcome::Failed(f) => {
            assert_eq!(
                f.code,
                FailureCode::InvalidArgument,
                "{what}: {}",
                f.message
            );
            assert!(
                f.message.contains(says),
                "{what}: {:?} should say {says:?}",
                f.message
            );
        }
        other => panic!("{what}: accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_alone_cannot_make_a_node_run_a_program() {
    let mut r = rig(&[]).await;
    let marker = r.root.path().join("MARKER");
    let before = std::fs::read(&r.installed).unwrap();
    let program = r.root.path().join("program").join("rakkr-recorder-agent");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_rakkr-marker"), &program).unwrap();
    publish(&r.h, "t-prog", &program, None);
    let o = offer(&r, &program, "2099.01.01-1", "t-prog");

    // An update without a signature.
    refused(
        command(&r.h, CommandBody::Update(o.clone())).await,
        "unsigned",
        "unsigned release refused",
    );
    // Signed by a key the node does not trust (the controller's own, say).
    let stranger = ReleaseKey::new();
    let dir = r.root.path().join("stranger");
    let rel = update::signed_release(&stranger, &dir, &program, "2099.01.01-1", &r.target);
    refused(
        command(&r.h, signed(&rel, o.clone())).await,
        "untrusted key",
        "which this agent does not trust",
    );
    // A genuine signed release (NEW), offered with the program's hash.
    let new = update::stamped(NEW, true);
    let genuine = release(&r, &new, NEW);
    let mut o2 = o.clone();
    o2.version = NEW.into();
    refused(
        command(&r.h, signed(&genuine, o2)).await,
        "not listed",
        "neither the archive",
    );
    // The genuine manifest edited to list the program: the signature fails.
    let mut forged = genuine.clone();
    forged.manifest =
        update::release_manifest("2099.01.01-1", &r.target, &genuine.archive, &program);
    refused(
        command(&r.h, signed(&forged, o.clone())).await,
        "forged manifest",
        "does not verify",
    );
    // The genuine release for another version than offered.
    refused(
        command(&r.h, signed(&genuine, o.clone())).await,
        "another version",
        "the signed release is 2026.11.23-2",
    );
    // Nothing was fetched, run or installed; the agent never restarted.
    let mut fetched = 0;
    while let Ok(e) = r.events.try_recv() {
        if matches!(&e, ControllerEvent::Fetched { transfer_id, .. } if transfer_id == "t-prog") {
            fetched += 1;
        }
    }
    assert_eq!(fetched, 0, "the program was fetched");
    assert!(!marker.exists(), "an unverified program was executed");
    assert_eq!(std::fs::read(&r.installed).unwrap(), before);
    assert!(r.sup.exits().is_empty(), "the agent restarted");

    // Control: signed with the trusted key as the binary of release
    // 2099.01.01-2, the program is fetched and run (its --version), which
    // the marker shows; it reports another version, so it is refused.
    let dir = r.root.path().join("control");
    let archive = update::release_tarball(&dir, &new, "2099.01.01-2", &r.target);
    let m = update::release_manifest("2099.01.01-2", &r.target, &archive, &program);
    let control = update::signed_manifest(ReleaseKey::shared(), &dir, archive, m);
    let mut o3 = o;
    o3.version = "2099.01.01-2".into();
    assert!(matches!(
        command(&r.h, signed(&control, o3)).await,
        Outcome::Done(_)
    ));
    let (kind, reason) = event(&mut r.events, "UpdateFailed", |b| match b {
        EventBody::UpdateFailed { kind, reason, .. } => Some((*kind, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(kind, UpdateFailure::VersionMismatch, "{reason}");
    assert!(marker.exists(), "the signed program was not run");
    assert_eq!(std::fs::read(&r.installed).unwrap(), before);
    drop(r.ctl);
}
