//! Signed releases: what makes an update authentic.
//!
//! The release pipeline (`packaging/build-release.sh`) writes
//! `release-manifest.json` — the version, and per target the archive's and
//! the binary's size and SHA-256 — and signs it with the offline release
//! key in minisign format (`release-manifest.json.minisig`, Ed25519 over a
//! BLAKE2b-512 prehash; See: https://jedisct1.github.io/minisign/). An
//! artifact is installed only when, in this order:
//!
//! 1. the signature verifies with one of the release keys this build
//!    trusts ([`Keys`]) — before anything is fetched, unpacked or run;
//! 2. the manifest's version is the one asked for, and it lists the
//!    artifact's SHA-256 and size for this node's target ([`SignedRelease::admit`]);
//! 3. a binary unpacked from an archive has the signed binary SHA-256,
//!    checked before it is run with `--version` (`artifact::verify`).
//!
//! Whoever supplies the artifact (a controller, a URL, an operator) is then
//! only a transport: its SHA-256 is a transfer check.
//!
//! Keys: `release-keys.txt` beside this file, built in; and, in development
//! builds only (not built with `--features static`, which the release
//! pipeline always uses), `update.trusted_keys` from the configuration —
//! for tests and labs, logged as a warning whenever it is used.

use std::collections::BTreeMap;

use minisign_verify::{PublicKey, Signature};
use rakkr_protocol::limits::{RELEASE_MANIFEST_MAX, SIGNATURE_MAX};
use serde::Deserialize;

use super::UpdateError;

/// The built-in release keys.
const BUILT_IN: &str = include_str!("release-keys.txt");

/// Whether this build honors `update.trusted_keys` (development builds).
pub const HONORS_CONFIGURED_KEYS: bool = !cfg!(feature = "static");

/// One trusted release key.
#[derive(Debug, Clone)]
pub struct ReleaseKey {
    /// minisign's key id: 16 upper-case hex digits, as `minisign` prints it.
    pub id: String,
    /// Where it came from ("built in", "configuration").
    pub origin: &'static str,
    key: PublicKey,
}

use crate::release_key::key_id;
pub use crate::release_key::parse_key;

/// The release keys an update may be signed with.
#[derive(Debug, Clone, Default)]
pub struct Keys(Vec<ReleaseKey>);

impl Keys {
    /// The keys built into this binary.
    pub fn built_in() -> Self {
        let mut keys = Keys::default();
        for line in BUILT_IN.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // NOTE: release-keys.txt is checked by the unit test below; a
            // line that does not parse can only come from a bad edit.
            if let Ok((id, key)) = parse_key(line) {
                keys.push(id, "built in", key);
            }
        }
        keys
    }

    /// The built-in keys plus, in a development build, `configured`
    /// (already validated by the configuration) — said in the log.
    pub fn with_configured(mut self, configured: &[String]) -> Self {
        if configured.is_empty() {
            return self;
        }
        if !HONORS_CONFIGURED_KEYS {
            tracing::warn!(
                keys = configured.len(),
                "update.trusted_keys is ignored: this is a release build, which trusts only its built-in release keys"
            );
            return self;
        }
        for text in configured {
            if let Ok((id, key)) = parse_key(text) {
                tracing::warn!(
                    key_id = %id,
                    "development build: trusting release key {id} from update.trusted_keys (a release build ignores it)"
                );
                self.push(id, "configuration", key);
            }
        }
        self
    }

    fn push(&mut self, id: String, origin: &'static str, key: PublicKey) {
        if !self.0.iter().any(|k| k.id == id) {
            self.0.push(ReleaseKey { id, origin, key });
        }
    }

    pub fn list(&self) -> &[ReleaseKey] {
        &self.0
    }

    fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let ids: Vec<String> = self
            .0
            .iter()
            .map(|k| format!("{} ({})", k.id, k.origin))
            .collect();
        ids.join(", ")
    }
}

/// `release-manifest.json`. Unknown fields are allowed (later releases may
/// add some); the ones read here are required.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: String,
    #[serde(default)]
    pub git_revision: String,
    pub targets: BTreeMap<String, TargetEntry>,
}

/// One target's files in the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetEntry {
    pub archive: String,
    pub archive_sha256: String,
    /// Absent in manifests from before it was added.
    #[serde(default)]
    pub archive_size: Option<u64>,
    pub binary_sha256: String,
    pub binary_size: u64,
}

/// A manifest whose signature verified.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    pub manifest: Manifest,
    /// The key that signed it.
    pub key_id: String,
}

/// What the signed manifest says an admitted artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The release archive: the binary in it must hash to `binary_sha256`.
    Archive { binary_sha256: String },
    /// The bare binary.
    Binary,
}

fn refuse(msg: impl Into<String>) -> UpdateError {
    UpdateError::Signature(msg.into())
}

/// Verifies `signature` over `manifest` (exact bytes) with `keys` and
/// parses the manifest. Nothing else is looked at before this passes.
pub fn verify(manifest: &[u8], signature: &str, keys: &Keys) -> Result<SignedRelease, UpdateError> {
    if manifest.len() > RELEASE_MANIFEST_MAX {
        return Err(refuse(format!(
            "the release manifest is {} bytes; the limit is {RELEASE_MANIFEST_MAX}",
            manifest.len()
        )));
    }
    if signature.len() > SIGNATURE_MAX {
        return Err(refuse(format!(
            "the signature is {} bytes; the limit is {SIGNATURE_MAX}",
            signature.len()
        )));
    }
    let sig = Signature::decode(signature).map_err(|e| {
        refuse(format!(
            "the signature is not a minisign signature ({e}); it is the release's release-manifest.json.minisig"
        ))
    })?;
    let signer = signature
        .lines()
        .nth(1)
        .and_then(key_id)
        .unwrap_or_default();
    let Some(key) = keys.list().iter().find(|k| k.id == signer) else {
        return Err(refuse(format!(
            "the release manifest is signed with key {signer}, which this agent does not trust (it trusts: {}); see README, \"Release keys\"",
            keys.describe()
        )));
    };
    key.key.verify(manifest, &sig, false).map_err(|e| {
        refuse(format!(
            "the signature by release key {} does not verify ({e}): the manifest or the signature was altered",
            key.id
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| refuse(format!("the signed file is not a release manifest ({e})")))?;
    Ok(SignedRelease {
        manifest,
        key_id: key.id.clone(),
    })
}

impl SignedRelease {
    /// `Err` unless the signed release is `version`.
    pub fn expect_version(&self, version: &str) -> Result<(), UpdateError> {
        if self.manifest.version != version {
            return Err(refuse(format!(
                "the signed release is {}, the update names {version}",
                self.manifest.version
            )));
        }
        Ok(())
    }

    /// This target's entry.
    pub fn entry(&self, target: &str) -> Result<&TargetEntry, UpdateError> {
        self.manifest.targets.get(target).ok_or_else(|| {
            let listed: Vec<&str> = self.manifest.targets.keys().map(String::as_str).collect();
            refuse(format!(
                "the signed release {} has no build for {target} (it lists {})",
                self.manifest.version,
                listed.join(", ")
            ))
        })
    }

    /// Whether an artifact of `sha256` and `size` is this release's
    /// archive or binary for `target`.
    pub fn admit(&self, target: &str, sha256: &str, size: u64) -> Result<Admitted, UpdateError> {
        let e = self.entry(target)?;
        let sha = sha256.to_ascii_lowercase();
        let (want_size, admitted) = if sha == e.archive_sha256.to_ascii_lowercase() {
            (
                e.archive_size,
                Admitted::Archive {
                    binary_sha256: e.binary_sha256.to_ascii_lowercase(),
                },
            )
        } else if sha == e.binary_sha256.to_ascii_lowercase() {
            (Some(e.binary_size), Admitted::Binary)
        } else {
            return Err(refuse(format!(
                "the artifact (SHA-256 {sha}) is neither the archive ({}) nor the binary the signed release {} lists for {target}",
                e.archive, self.manifest.version
            )));
        };
        if let Some(want) = want_size.filter(|w| *w != size) {
            return Err(refuse(format!(
                "the artifact has {size} bytes; the signed release lists {want}"
            )));
        }
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests;
