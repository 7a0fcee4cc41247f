//! Enrollment: a node's first identity. The key is made here and never
//! leaves the node; a one-time token (from a file, the RAKKR_ENROLL_TOKEN
//! variable or the systemd credential `rakkr-enroll-token`, never the
//! config file) and a CSR go to the controller over TLS that authenticates
//! the controller with the fleet CA bundle; the chain that comes back is
//! checked completely (`validate`) and installed atomically (`store`). A
//! refusal writes nothing. Used by `trust enroll` and by the daemon when it
//! starts without an identity but with a token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rakkr_protocol::client::{self, Endpoint};
use rustls::pki_types::UnixTime;

use super::{store, validate};
use crate::config::TrustPaths;
use crate::exit::Failure;

/// Where Rakkr's Ansible role installs the controller's CA (for its own
/// agent's HTTPS): checks the bridge when the node has no CA bundle yet.
pub const ROLE_CA: &str = "/usr/local/share/ca-certificates/rakkr-controller-ca.crt";

/// Where the token comes from, in order: `--token-file`, RAKKR_ENROLL_TOKEN,
/// RAKKR_CONTROLLER_TOKEN (the Rakkr node token Rakkr's Ansible role
/// gives its agent; the bridge checks it with the Rakkr controller),
/// `$CREDENTIALS_DIRECTORY/rakkr-enroll-token` (systemd LoadCredential=).
pub fn token(file: Option<&Path>) -> anyhow::Result<(String, String)> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .with_context(|| format!("reading the enrollment token {}", p.display()))
    };
    let (token, from) = if let Some(p) = file {
        (read(p)?, p.display().to_string())
    } else if let Ok(t) = std::env::var("RAKKR_ENROLL_TOKEN") {
        (t, "RAKKR_ENROLL_TOKEN".to_owned())
    } else if let Ok(t) = std::env::var("RAKKR_CONTROLLER_TOKEN") {
        (t, "RAKKR_CONTROLLER_TOKEN".to_owned())
    } else if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join("rakkr-enroll-token");
        (read(&p)?, format!("systemd credential {}", p.display()))
    } else {
        return Err(anyhow!(
            "no enrollment token: give --token-file, set RAKKR_ENROLL_TOKEN (or the Rakkr node token as RAKKR_CONTROLLER_TOKEN), or pass the systemd credential rakkr-enroll-token"
        )
        .context(Failure::Config));
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(anyhow!("the enrollment token from {from} is empty").context(Failure::Config));
    }
    Ok((token, from))
}

/// Enrolls `node_id` with the controller at `endpoint` using `token`, the
/// controller authenticated by `ca_pem`; installs the identity under
/// `paths`. Returns where it was installed.
pub async fn enroll(
    paths: &TrustPaths,
    endpoint: &crate::config::Endpoint,
    node_id: &str,
    (token, from): (String, String),
    ca_pem: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<PathBuf> {
    let cas = rakkr_protocol::tls::certs_from_pem(&ca_pem, "the CA bundle").map_err(|e| {
        validate::Refusal::Unreadable {
            what: "CA bundle".into(),
            detail: e.to_string(),
        }
    })?;
    let tls = rakkr_protocol::tls::enroll_client_config(&cas)?;
    let id = node_id.to_owned();
    let (csr_der, key_pem) =
        tokio::task::spawn_blocking(move || super::csr::key_and_csr(&id)).await??;
    let target = Endpoint {
        address: endpoint.address(),
        server_name: rakkr_protocol::tls::server_name(&endpoint.server_name)?,
    };
    let answer = client::enroll(
        &target,
        tls,
        rakkr_protocol::Enroll {
            node_id: node_id.to_owned(),
            token,
            csr_der,
        },
        timeout,
    )
    .await
    .with_context(|| format!("enrolling with {}", endpoint.address()))
    .context(Failure::Unreachable)?;
    let chain_pem = answer
        .map_err(|reason| {
            anyhow!("the controller refused the enrollment (token from {from}): {reason}")
        })
        .context(Failure::EnrollRefused)?;
    validate::check(
        &ca_pem,
        chain_pem.as_bytes(),
        key_pem.as_bytes(),
        Some(node_id),
        UnixTime::now(),
    )?;
    store::install_off_runtime(paths, ca_pem, chain_pem, key_pem)
        .await
        .context(Failure::TrustStore)
}

/// The CA bundle that checks the controller at enrollment, and where it
/// was read: `ca_bundle`, or — when that is the default path and missing —
/// `role_ca` (see [`ROLE_CA`]).
pub fn enrollment_ca(
    ca_bundle: &Path,
    configured: bool,
    role_ca: &Path,
) -> std::io::Result<(Vec<u8>, PathBuf)> {
    match std::fs::read(ca_bundle) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !configured => std::fs::read(role_ca)
            .map(|pem| (pem, role_ca.to_owned()))
            .map_err(|_| e),
        other => other.map(|pem| (pem, ca_bundle.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_s_ca_checks_the_bridge_only_when_ours_is_not_configured() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, role) = (dir.path().join("ca.pem"), dir.path().join("role.crt"));
        std::fs::write(&role, b"ROLE").unwrap();
        assert_eq!(
            enrollment_ca(&ours, false, &role).unwrap(),
            (b"ROLE".to_vec(), role.clone())
        );
        assert!(
            enrollment_ca(&ours, true, &role).is_err(),
            "a configured bundle that is missing is an error, not a fallback"
        );
        std::fs::write(&ours, b"OURS").unwrap();
        assert_eq!(
            enrollment_ca(&ours, false, &role).unwrap(),
            (b"OURS".to_vec(), ours)
        );
    }
}
