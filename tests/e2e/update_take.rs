//! Self-update while a take records: deferred until the take ends, or — when
//! the command forces it — the take is closed cleanly first. Either way the
//! audio on disk is bit-exact.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rakkr_controller::{Artifact, Controller, ControllerEvent, ControllerHandle};
use rakkr_e2e::alsa::PacedFeeder;
use rakkr_e2e::update::{self, NEW, OLD, Supervisor, sha256_hex};
use rakkr_protocol::{EventBody, Outcome, Reply, UpdateAck, UpdateOffer, UpdateSource};
use tokio::sync::broadcast;

use crate::takes::{self, Setup, recording_setup, wait_device};
use crate::update::{connected, event};

struct TakeRig {
    _tmp: tempfile::TempDir,
    feeder: Option<PacedFeeder>,
    ctl: Controller,
    h: ControllerHandle,
    events: broadcast::Receiver<ControllerEvent>,
    sup: Supervisor,
    installed: PathBuf,
    old: PathBuf,
    new: PathBuf,
    /// The take's directory.
    dir: PathBuf,
    offer: UpdateOffer,
    release: update::SignedRelease,
}

/// OLD recording take `take_id` for a moment, NEW published, its offer ready.
async fn recording(take_id: &str, force: bool) -> TakeRig {
    let tmp = tempfile::tempdir().unwrap();
    let old = update::stamped(OLD, false);
    let new = update::stamped(NEW, true);
    let Setup {
        feeder,
        ctl,
        mut events,
        mut env,
        ..
    } = recording_setup(tmp.path(), &[("RAKKR_UPDATE_STABLE_SECONDS", "1")], false).await;
    env.insert("RAKKR_UPDATE_PROBATION_SECONDS".into(), "15".into());
    env.insert(
        "RAKKR_UPDATE_TRUSTED_KEYS".into(),
        update::ReleaseKey::shared().public().into(),
    );
    let installed = update::install_dir(tmp.path(), &old);
    let sup = Supervisor::start(&installed, env);
    let target = connected(&mut events, OLD).await;
    let h = ctl.handle();
    wait_device(&h, || sup.log().join("\n")).await;
    let take = takes::started(&h, takes::start(take_id)).await;
    takes::audio_taken(&h, 9).await;
    h.publish_artifact(
        "t-take",
        Artifact {
            bytes: Arc::new(std::fs::read(&new).unwrap()),
            cut_at: None,
        },
    );
    let offer = UpdateOffer {
        version: NEW.into(),
        target,
        size: std::fs::metadata(&new).unwrap().len(),
        sha256: sha256_hex(&new),
        source: UpdateSource::Stream {
            transfer_id: "t-take".into(),
        },
        force,
        allow_downgrade: false,
    };
    let release = update::signed_release(
        update::ReleaseKey::shared(),
        &tmp.path().join("release"),
        &new,
        NEW,
        &offer.target,
    );
    TakeRig {
        release,
        _tmp: tmp,
        feeder,
        ctl,
        h,
        events,
        sup,
        installed,
        old,
        new,
        dir: PathBuf::from(take.dir),
        offer,
    }
}

impl TakeRig {
    async fn offer(&self) -> Outcome {
        self.h
            .command(
                takes::NODE,
                crate::update::signed(&self.release, self.offer.clone()),
                crate::T,
            )
            .await
            .unwrap()
            .outcome
    }

    async fn installed(&mut self) {
        event(&mut self.events, "UpdateInstalled", |b| {
            matches!(b, EventBody::UpdateInstalled { .. }).then_some(())
        })
        .await;
    }

    /// The node comes back as NEW, which is what is installed, and NEW is
    /// committed once it has captured clean audio from the device.
    async fn back_as_new(&mut self) {
        connected(&mut self.events, NEW).await;
        assert_eq!(
            std::fs::read(&self.installed).unwrap(),
            std::fs::read(&self.new).unwrap()
        );
        event(&mut self.events, "UpdateCommitted", |b| {
            matches!(b, EventBody::UpdateCommitted { version, .. } if version == NEW).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_during_a_take_waits_for_it_and_the_audio_is_bit_exact() {
    let mut r = recording("show-u", false).await;
    assert_eq!(
        r.offer().await,
        Outcome::Done(Reply::Update(UpdateAck::Deferred))
    );
    event(&mut r.events, "UpdateDeferred", |b| {
        matches!(b, EventBody::UpdateDeferred { take_id, .. } if take_id == "show-u").then_some(())
    })
    .await;
    // The artifact is fetched and verified meanwhile; nothing is installed
    // and the agent keeps recording (3 s more of audio).
    tokio::task::block_in_place(|| {
        rakkr_e2e::wait_until(Duration::from_secs(60), "update verified", || {
            r.sup.log().iter().any(|l| l.contains("update verified"))
        })
    });
    takes::audio_taken(&r.h, 31).await;
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        std::fs::read(&r.old).unwrap()
    );
    assert!(
        r.sup.exits().is_empty(),
        "the agent restarted during the take"
    );
    let m = takes::stopped(&r.h, "show-u").await;
    assert_eq!(m["status"], "complete");
    let frames = rakkr_e2e::takecheck::check_content(&r.dir, &m, &crate::takes::drops(&r.feeder));
    assert!(frames > 48_000 * 3, "{frames} frames");
    // Then the update goes in.
    r.installed().await;
    r.back_as_new().await;
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_update_during_a_take_closes_it_cleanly_first() {
    let mut r = recording("show-f", true).await;
    assert_eq!(
        r.offer().await,
        Outcome::Done(Reply::Update(UpdateAck::Started))
    );
    // Installed at once; then the take ends before the restart, early and
    // saying why, and its last events reach the controller.
    r.installed().await;
    let (status, reason, manifest_json) = event(&mut r.events, "TakeStopped", |b| match b {
        EventBody::TakeStopped {
            take_id,
            status,
            reason,
            manifest_json,
            ..
        } if take_id == "show-f" => Some((status.clone(), reason.clone(), manifest_json.clone())),
        _ => None,
    })
    .await;
    assert_eq!(status, "stopped");
    assert!(reason.contains("update"), "{reason}");
    r.back_as_new().await;
    assert_eq!(r.sup.exits().first().and_then(|s| s.code()), Some(75));
    // The manifest on disk is the final one, and the audio is bit-exact.
    let m: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk, m);
    assert_eq!(m["status"], "stopped");
    let frames =
        rakkr_e2e::takecheck::check_content(Path::new(&r.dir), &m, &crate::takes::drops(&r.feeder));
    assert!(frames > 48_000 / 2, "{frames} frames");
    drop(r.ctl);
}
