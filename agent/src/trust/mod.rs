//! The node's TLS identity and the fleet CA bundle, as files on disk
//! (default `<state>/trust/{ca.pem,node.pem,node.key}`). Read fresh on every
//! connection attempt, so trust installed while the agent runs is picked up.
//! `validate` checks a candidate identity, `store` installs one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rakkr_protocol::tls::{self, Identity};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::TrustPaths;

pub mod bundle;
pub mod channel;
pub mod csr;
pub mod enroll;
pub mod store;
pub mod validate;

/// Loaded trust material, ready for the link.
#[derive(Debug)]
pub struct Loaded {
    pub client_config: Arc<rustls::ClientConfig>,
    /// The node id from the certificate's common name.
    pub node_id: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Reads the three files; under the managed layout, again if `current`
/// moved meanwhile (an install in between), so the set is never torn.
fn read_all(paths: &TrustPaths) -> anyhow::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let current = || store::managed_dir(paths).and_then(store::current_target);
    let mut last = None;
    for _ in 0..3 {
        let before = current();
        let read_set = (
            read(&paths.ca_bundle, "CA bundle")?,
            read(&paths.cert, "node certificate")?,
            read(&paths.key, "node private key")?,
        );
        if current() == before {
            return Ok(read_set);
        }
        last = Some(read_set);
    }
    last.context("trust changed during every read")
}

/// Loads and checks the CA bundle, certificate and key.
pub fn load(paths: &TrustPaths) -> anyhow::Result<Loaded> {
    private_key(&paths.key)?;
    let (ca_pem, cert_pem, key_pem) = read_all(paths)?;
    let cas = tls::certs_from_pem(&ca_pem, &paths.ca_bundle.display().to_string())?;
    let identity = Identity::from_pem(
        &cert_pem,
        &key_pem,
        &format!("{} / {}", paths.cert.display(), paths.key.display()),
    )?;
    let leaf = identity
        .chain
        .first()
        .cloned()
        .context("node certificate chain is empty")?;
    let node_id = tls::common_name(&leaf)
        .with_context(|| format!("reading the node id from {}", paths.cert.display()))?;
    let info = cert_info(&leaf)?;
    if info.days_left < 0 {
        tracing::warn!(
            cert = %paths.cert.display(),
            not_after = %info.not_after,
            "node certificate has expired; the controller will refuse it until it is renewed"
        );
    }
    let client_config = tls::client_config(&cas, identity)?;
    Ok(Loaded {
        client_config,
        node_id,
        not_before_unix: info.not_before_unix,
        not_after_unix: info.not_after_unix,
    })
}

/// What the inventory and `trust show` report about the trust store.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustReport {
    /// `ok`, `absent`, `invalid` or `expired`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub ca_bundle_path: String,
    pub certificate_path: String,
    pub private_key_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertInfo>,
    pub ca_sha256: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    #[serde(skip)]
    pub not_before_unix: i64,
    pub not_after: String,
    #[serde(skip)]
    pub not_after_unix: i64,
    pub days_left: i64,
    pub sha256: String,
}

pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn cert_info(cert: &CertificateDer<'_>) -> anyhow::Result<CertInfo> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| anyhow::anyhow!("certificate is not valid X.509: {e}"))?;
    let v = c.validity();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let not_after_unix = v.not_after.timestamp();
    Ok(CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: c.raw_serial_as_string(),
        not_before: crate::util::iso8601(v.not_before.timestamp()),
        not_before_unix: v.not_before.timestamp(),
        not_after: crate::util::iso8601(not_after_unix),
        not_after_unix,
        days_left: (not_after_unix - now).div_euclid(86_400),
        sha256: fingerprint(cert.as_ref()),
    })
}

/// Describes the trust store without modifying anything.
pub fn report(paths: &TrustPaths) -> TrustReport {
    let mut r = TrustReport {
        status: "ok",
        reason: None,
        ca_bundle_path: paths.ca_bundle.display().to_string(),
        certificate_path: paths.cert.display().to_string(),
        private_key_path: paths.key.display().to_string(),
        certificate: None,
        ca_sha256: Vec::new(),
    };
    let mut problems = Vec::new();
    match std::fs::read(&paths.ca_bundle) {
        Ok(pem) => match tls::certs_from_pem(&pem, &r.ca_bundle_path) {
            Ok(cas) => r.ca_sha256 = cas.iter().map(|c| fingerprint(c)).collect(),
            Err(e) => problems.push(("invalid", e.to_string())),
        },
        Err(e) => problems.push((
            "absent",
            format!("no CA bundle at {}: {e}", r.ca_bundle_path),
        )),
    }
    match std::fs::read(&paths.cert) {
        Ok(pem) => match tls::certs_from_pem(&pem, &r.certificate_path)
            .map_err(anyhow::Error::from)
            .and_then(|c| cert_info(&c[0]))
        {
            Ok(info) => {
                if info.days_left < 0 {
                    problems.push((
                        "expired",
                        format!("node certificate expired at {}", info.not_after),
                    ));
                }
                r.certificate = Some(info);
            }
            Err(e) => problems.push(("invalid", e.to_string())),
        },
        Err(e) => problems.push((
            "absent",
            format!("no node certificate at {}: {e}", r.certificate_path),
        )),
    }
    if !paths.key.exists() {
        problems.push((
            "absent",
            format!("no private key at {}", r.private_key_path),
        ));
    }
    if let Some((status, _)) = problems.first() {
        r.status = status;
        r.reason = Some(
            problems
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    r
}

/// Fails unless the trust material exists (used by `check`).
pub fn require(paths: &TrustPaths) -> anyhow::Result<Loaded> {
    if !paths.cert.exists() {
        bail!(
            "no node certificate at {}: this node has no identity yet; install one (node.pem, node.key, ca.pem) in the trust directory",
            paths.cert.display()
        );
    }
    load(paths)
}

/// The node key must be readable by its owner alone: one that others can
/// read is made 0600 when it is ours (and the log says so), refused when
/// it is not.
pub fn private_key(key: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(m) = std::fs::metadata(key) else {
        return Ok(()); // a missing key is reported by the read that follows
    };
    let mode = m.mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if m.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "the node key {} is readable by other users (mode {mode:o}) and not owned by this user: make it 0600 (chmod 600 {})",
            key.display(),
            key.display()
        );
    }
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making the node key {} private", key.display()))?;
    tracing::warn!(key = %key.display(), was = format!("{mode:o}"), "the node key was readable by other users; it is now 0600");
    Ok(())
}
