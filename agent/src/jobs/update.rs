//! A controller `Update`/`UpdateSigned` command on the running daemon:
//! check the offer and its release signature, answer at once (`Started`,
//! `Deferred` or `AlreadyInstalled`), then fetch, verify, wait for the take
//! to end unless forced, install, and restart. An offer without a
//! signature is accepted only from a URL, whose signed manifest is fetched
//! beside it and verified before the artifact is.
//! Outcomes are events: UpdateDeferred, UpdateInstalled, UpdateFailed
//! (then UpdateCommitted or UpdateRolledBack from probation).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rakkr_protocol::calver::CalVer;
use rakkr_protocol::{EventBody, FailureCode, UpdateAck, UpdateOffer, UpdateSource};

use crate::build_info::{TARGET, VERSION};
use crate::node::Node;
use crate::update::UpdateError;
use crate::update::artifact::{self, Expect, Policy};
use crate::update::install::{Paths, install_with_state};
use crate::update::release::{self, Keys, SignedRelease};
use crate::update::transfer;

/// Largest artifact accepted.
pub const MAX_ARTIFACT: u64 = 512 << 20;

type Refusal = (FailureCode, String);

/// The release manifest and signature that came with an offer.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub manifest: &'a str,
    pub signature: &'a str,
}

/// The release keys this node trusts.
pub fn keys(node: &Node) -> Keys {
    Keys::built_in().with_configured(&node.config.update.trusted_keys)
}

/// Verifies an offer's signature and that the signed release is the
/// offered one (version, target, and size and hash when given): nothing
/// is fetched for an offer that fails this.
fn check_signed(
    offer: &UpdateOffer,
    signed: Signed<'_>,
    keys: &Keys,
) -> Result<SignedRelease, String> {
    let r = release::verify(signed.manifest.as_bytes(), signed.signature, keys)
        .and_then(|r| r.expect_version(&offer.version).map(|()| r))
        .and_then(|r| r.entry(TARGET).map(|_| ()).map(|()| r))
        .map_err(|e| e.to_string())?;
    if artifact::parse_sha256(&offer.sha256).is_some() {
        r.admit(TARGET, &offer.sha256, offer.size)
            .map_err(|e| e.to_string())?;
    }
    Ok(r)
}

/// Checks the offer and starts the update in the background.
pub async fn accept(
    node: &Arc<Node>,
    offer: &UpdateOffer,
    signed: Option<Signed<'_>>,
) -> Result<UpdateAck, Refusal> {
    let invalid = |m: String| Err((FailureCode::InvalidArgument, m));
    if offer.target != TARGET {
        return invalid(format!(
            "wrong architecture: the update is for {}, this node runs {TARGET}",
            offer.target
        ));
    }
    if !(1..=MAX_ARTIFACT).contains(&offer.size) {
        return invalid(format!("size {} is outside 1..={MAX_ARTIFACT}", offer.size));
    }
    let from_url = matches!(offer.source, UpdateSource::Url { .. });
    if artifact::parse_sha256(&offer.sha256).is_none() && !(from_url && offer.sha256.is_empty()) {
        return invalid(format!(
            "{:?} is not a SHA-256 (64 hex digits)",
            offer.sha256
        ));
    }
    if let UpdateSource::Url { url } = &offer.source
        && !url.starts_with("https://")
    {
        return invalid(format!("{url:?} is not an https:// URL"));
    }
    if CalVer::parse(&offer.version).is_none() && !offer.allow_downgrade {
        return invalid(format!(
            "{:?} is not a release version YYYY.MM.DD-N (a development build needs allow_downgrade)",
            offer.version
        ));
    }
    match artifact::policy(&offer.version, Some(VERSION), offer.allow_downgrade) {
        Ok(Policy::AlreadyInstalled) => return Ok(UpdateAck::AlreadyInstalled),
        Ok(Policy::Install) => {}
        Err(e) => return invalid(e.to_string()),
    }
    let release = match (signed, from_url) {
        (Some(s), _) => match check_signed(offer, s, &keys(node)) {
            Ok(r) => Some(r),
            Err(m) => return invalid(m),
        },
        // Fetched from beside the URL before the artifact (in `run`).
        (None, true) => None,
        (None, false) => {
            return invalid(
                "unsigned release refused: no release signature came with the update; send UpdateSigned with the release's release-manifest.json and its .minisig".into(),
            );
        }
    };
    {
        let mut active = node.update.active();
        match active.as_ref() {
            Some((v, h)) if *v == offer.version && *h == offer.sha256 => {}
            Some((v, _)) => {
                return Err((
                    FailureCode::Busy,
                    format!("an update to {v} is already in progress"),
                ));
            }
            None => *active = Some((offer.version.clone(), offer.sha256.clone())),
        }
    }
    let take = recording_take(node).await;
    let deferred = take.is_some() && !offer.force;
    if let Some(take_id) = take.filter(|_| deferred) {
        let _ = node
            .emit(EventBody::UpdateDeferred {
                version: offer.version.clone(),
                take_id,
            })
            .await;
    }
    let (node2, offer2) = (node.clone(), offer.clone());
    tokio::spawn(async move {
        let result = run(&node2, &offer2, release, deferred).await;
        *node2.update.active() = None;
        match result {
            Ok(()) => node2.request_restart(),
            Err(e) => {
                tracing::error!(version = %offer2.version, error = %e, "update refused");
                let _ = node2
                    .emit(EventBody::UpdateFailed {
                        version: offer2.version.clone(),
                        kind: e.kind(),
                        reason: e.to_string(),
                    })
                    .await;
            }
        }
    });
    Ok(if deferred {
        UpdateAck::Deferred
    } else {
        UpdateAck::Started
    })
}

async fn recording_take(node: &Arc<Node>) -> Option<String> {
    let rec = node.recorder.get()?;
    rec.status().await.ok()?.take.map(|t| t.take_id)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UpdateError> + Send + 'static,
) -> Result<T, UpdateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UpdateError::Transfer(format!("worker failed: {e}")))?
}

async fn run(
    node: &Arc<Node>,
    offer: &UpdateOffer,
    release: Option<SignedRelease>,
    mut deferred: bool,
) -> Result<(), UpdateError> {
    let staging = crate::update::dir(&node.config.state_dir).join("staging");
    {
        let staging = staging.clone();
        blocking(move || fresh_dir(&staging)).await?;
    }
    let artifact = staging.join("artifact");
    let release = match (release, &offer.source) {
        (Some(r), _) => r,
        (None, UpdateSource::Url { url }) => {
            let (url, ca, keys) = (url.clone(), node.config.trust.ca_bundle.clone(), keys(node));
            let r = blocking(move || transfer::fetch_release_beside(&url, &ca, &keys)).await?;
            r.expect_version(&offer.version)?;
            r
        }
        (None, UpdateSource::Stream { .. }) => {
            return Err(UpdateError::Signature("no release signature".into()));
        }
    };
    // NOTE: first let the command that started this update finish (its
    // result recorded and handed to the link): a fast transfer could
    // otherwise outrun the reply, and a link cut mid-transfer lose it.
    drop(node.serial.lock().await);
    tracing::info!(version = %offer.version, size = offer.size, key = %release.key_id, "fetching update (release signature verified)");
    let digest = match &offer.source {
        UpdateSource::Stream { transfer_id } => {
            pull_stream(node, transfer_id, offer.size, &artifact).await?
        }
        UpdateSource::Url { url } => {
            let (url, ca, out) = (
                url.clone(),
                node.config.trust.ca_bundle.clone(),
                artifact.clone(),
            );
            blocking(move || transfer::fetch_url(&url, &ca, MAX_ARTIFACT, &out)).await?
        }
    };
    let expect = Expect {
        sha256: artifact::parse_sha256(&offer.sha256),
        size: Some(offer.size),
        release,
    };
    let verified = {
        let staging = staging.clone();
        blocking(move || artifact::verify(&artifact, Some(digest), &staging, &expect)).await?
    };
    tracing::info!(version = %verified.version, sha256 = %verified.sha256, "update verified");
    // Never during a take, unless forced.
    loop {
        if offer.force {
            break;
        }
        let Some(take_id) = recording_take(node).await else {
            break;
        };
        if !deferred {
            deferred = true;
            let _ = node
                .emit(EventBody::UpdateDeferred {
                    version: offer.version.clone(),
                    take_id,
                })
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let state_dir = node.config.state_dir.clone();
    let version = verified.version.clone();
    blocking(move || {
        let paths = Paths::resolve(None)?;
        install_with_state(&verified, VERSION, &paths, &state_dir)?;
        let _ = std::fs::remove_dir_all(&staging);
        Ok(())
    })
    .await?;
    tracing::info!(%version, previous = VERSION, "update installed; restarting into it");
    let _ = node
        .emit(EventBody::UpdateInstalled {
            version,
            previous: VERSION.into(),
        })
        .await;
    Ok(())
}

async fn pull_stream(
    node: &Arc<Node>,
    id: &str,
    size: u64,
    out: &Path,
) -> Result<(String, u64), UpdateError> {
    let r = transfer::pull(&node.update, node.sessions.subscribe(), id, size, out).await;
    node.update.close_transfer();
    r
}

fn fresh_dir(dir: &Path) -> Result<(), UpdateError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(UpdateError::io(format!("creating {}", dir.display())))
}
