//! Self-update from an HTTPS URL (a release mirror): the release archive and
//! the `.sha256` beside it, over real TLS trusting the fleet CA; refusals
//! for a server the node must not trust, a missing artifact, a checksum
//! that does not match and a plain-HTTP URL.

use std::collections::HashMap;

use rakkr_e2e::TestPki;
use rakkr_e2e::https::HttpsFiles;
use rakkr_e2e::update::{self, NEW, OLD, sha256_hex};
use rakkr_protocol::{
    CommandBody, EventBody, FailureCode, Outcome, Reply, UpdateAck, UpdateFailure, UpdateSource,
};

use crate::update::{Rig, command, connected, event, offer, rig};

/// Waits for an `UpdateFailed` and returns its kind and reason.
async fn failed(r: &mut Rig) -> (UpdateFailure, String) {
    event(&mut r.events, "UpdateFailed", |b| match b {
        EventBody::UpdateFailed { kind, reason, .. } => Some((*kind, reason.clone())),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_from_an_https_url_uses_the_sha256_beside_it() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let tgz = update::release_tarball(r.root.path(), &new, NEW, &r.target);
    let name = format!("/releases/rakkr-recorder-agent-{NEW}-{}.tar.gz", r.target);
    let bytes = std::fs::read(&tgz).unwrap();
    let sums = format!(
        "{}  rakkr-recorder-agent-{NEW}-{}.tar.gz\n",
        sha256_hex(&tgz),
        r.target
    );
    let server = HttpsFiles::start(
        &r.pki,
        HashMap::from([
            (name.clone(), bytes),
            (format!("{name}.sha256"), sums.into_bytes()),
        ]),
    )
    .await;
    let mut o = offer(&r, &tgz, NEW, "");
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
        [format!("{name}.sha256"), name],
        "the hash first, then the archive"
    );
    drop(r.ctl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_https_sources_are_refused_and_the_binary_is_untouched() {
    let mut r = rig(&[]).await;
    let new = update::stamped(NEW, true);
    let before = std::fs::read(&r.installed).unwrap();
    let bytes = std::fs::read(&new).unwrap();
    let files = || HashMap::from([("/agent".to_owned(), bytes.clone())]);

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

    // No hash in the command and no .sha256 beside the artifact.
    o.sha256 = String::new();
    command(&r.h, CommandBody::Update(o.clone())).await;
    let (kind, reason) = failed(&mut r).await;
    assert_eq!(kind, UpdateFailure::Transfer, "{reason}");
    assert!(reason.contains(".sha256"), "{reason}");

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
