//! Self-update from an HTTPS URL (a release mirror): the release archive and
//! the signed `release-manifest.json` beside it, over real TLS trusting the
//! fleet CA; refusals for a server the node must not trust, a missing
//! artifact, a checksum that does not match, a release that is not signed
//! or signed by a stranger, and a plain-HTTP URL.

use std::collections::HashMap;

use rakkr_e2e::TestPki;
use rakkr_e2e::https::HttpsFiles;
use rakkr_e2e::update::{self, NEW, OLD, ReleaseKey};
use rakkr_protocol::{
    CommandBody, EventBody, FailureCode, Outcome, Reply, UpdateAck, UpdateFailure, UpdateSource,
};

use crate::update::{Rig, command, connected, event, offer, release, rig};

/// Waits for an `UpdateFailed` and returns its kind and reason.
async fn failed(r: &mut Rig) -> (UpdateFailure, String) {
    event(&mut r.events, "UpdateFailed", |b| match b {
        EventBody::UpdateFailed { kind, reason, .. } => Some((*kind, reason.clone())),
        _ => None,
    })
    .await
}

/// The files of `rel` as a release mirror serves them under `dir`.
fn mirror(rel: &update::SignedRelease, dir: &str) -> HashMap<String, Vec<u8>> {
    let name = rel.archive.file_name().unwrap().to_string_lossy();
    HashMap::from([
        (
            format!("{dir}/{name}"),
            std::fs::read(&rel.archive).unwrap(),
        ),
        (
            format!("{dir}/release-manifest.json"),
            rel.manifest.clone().into_bytes(),
        ),
        (
            format!("{dir}/release-manifest.json.minisig"),
            rel.signature.clone().into_bytes(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_from_an_https_url_is_verified_by_the_signed_manifest_beside_it() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let rel = release(&r, &new, NEW);
    let name = format!("/releases/rakkr-recorder-agent-{NEW}-{}.tar.gz", r.target);
    let server = HttpsFiles::start(&r.pki, mirror(&rel, "/releases")).await;
    // A plain Update (no signature in the command, no hash): the agent
    // fetches the signed manifest beside the URL first.
    let mut o = offer(&r, &rel.archive, NEW, "");
    o.source = UpdateSource::Url {
        url: server.url(&name),
    };
    o.sha256 = String::new();
    assert_eq!(
        command(&r.h, CommandBody::Update(o)).await,
        Outcome::Done(Reply::Update(UpdateAck::Started))
    );
    connected(&mut r.events, NEW).await;
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        std::fs::read(&new).unwrap()
    );
    assert_eq!(
        *server.requests.lock().unwrap(),
        [
            "/releases/release-manifest.json".to_owned(),
            "/releases/release-manifest.json.minisig".to_owned(),
            name
        ],
        "the signed manifest first, then the archive"
    );
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_https_sources_are_refused_and_the_binary_is_untouched() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let before = std::fs::read(&r.installed).unwrap();
    let rel = release(&r, &new, NEW);
    let bytes = std::fs::read(&new).unwrap();
    let files = || {
        let mut f = mirror(&rel, "");
        f.insert("/agent".to_owned(), bytes.clone());
        f
    };

    // A server whose certificate the fleet CA did not issue.
    let stranger = TestPki::new();
    let rogue = HttpsFiles::start(&stranger, files()).await;
    let mut o = offer(&r, &new, NEW, "");
    o.source = UpdateSource::Url {
        url: rogue.url("/agent"),
    };
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Transfer, "{reason}");
    assert!(
        rogue.requests.lock().unwrap().is_empty(),
        "nothing was asked of it"
    );

    // The right server, but no such file.
    let server = HttpsFiles::start(&r.pki, files()).await;
    o.source = UpdateSource::Url {
        url: server.url("/missing"),
    };
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Transfer, "{reason}");
    assert!(reason.contains("404"), "{reason}");

    // The right file with the wrong checksum.
    o.source = UpdateSource::Url {
        url: server.url("/agent"),
    };
    o.sha256 = "ab".repeat(32);
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Checksum, "{reason}");

    // No signed manifest beside the artifact: the artifact is never fetched.
    let bare = HttpsFiles::start(
        &r.pki,
        HashMap::from([("/agent".to_owned(), bytes.clone())]),
    )
    .await;
    o.sha256 = String::new();
    o.source = UpdateSource::Url {
        url: bare.url("/agent"),
    };
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Signature, "{reason}");
    assert!(reason.contains("release-manifest.json"), "{reason}");
    assert_eq!(
        *bare.requests.lock().unwrap(),
        ["/release-manifest.json"],
        "the artifact was fetched"
    );

    // A manifest beside it signed by a key the node does not trust.
    let other = update::signed_release(
        &ReleaseKey::new(),
        &r.root.path().join("stranger-release"),
        &new,
        NEW,
        &r.target,
    );
    let mut f = mirror(&other, "");
    f.insert("/agent".to_owned(), bytes.clone());
    let strange = HttpsFiles::start(&r.pki, f).await;
    o.source = UpdateSource::Url {
        url: strange.url("/agent"),
    };
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Signature, "{reason}");
    assert!(reason.contains("does not trust"), "{reason}");

    // Plain HTTP is refused before anything is fetched.
    o.source = UpdateSource::Url {
        url: format!("http://127.0.0.1:{}/agent", server.addr.port()),
    };
    match command(&r.h, CommandBody::Update(o)).await {
        Outcome::Failed(f) => {
            assert_eq!(f.code, FailureCode::InvalidArgument);
            assert!(f.message.contains("https://"), "{}", f.message);
        }
        other => panic!("plain HTTP accepted: {other:?}"),
    }
    assert_eq!(std::fs::read(&r.installed).unwrap(), before);
    assert!(r.sup.exits().is_empty(), "the agent never restarted");
    assert_eq!(
        std::fs::read(&r.installed).unwrap(),
        std::fs::read(update::stamped(OLD, false)).unwrap()
    );
    drop(r.ctl);
}
