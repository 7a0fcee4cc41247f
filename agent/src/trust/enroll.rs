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

/// Where the token comes from, in order: `--token-file`, RAKKR_ENROLL_TOKEN,
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
    } else if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join("rakkr-enroll-token");
        (read(&p)?, format!("systemd credential {}", p.display()))
    } else {
        return Err(anyhow!(
            "no enrollment token: give --token-file, set RAKKR_ENROLL_TOKEN, or pass the systemd credential rakkr-enroll-token"
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
