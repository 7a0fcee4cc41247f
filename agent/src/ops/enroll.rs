//! `trust enroll`: a node's first identity. The key is made here and
//! never leaves the node; a one-time token (from a file, the
//! RAKKR_ENROLL_TOKEN variable or the systemd credential
//! `rakkr-enroll-token`, never the config file) and a CSR go to the
//! controller over TLS that authenticates the controller with the fleet CA
//! bundle; the chain that comes back is checked completely (`validate`)
//! and installed atomically (`store`). A refusal writes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rakkr_protocol::client::{self, Endpoint};
use rustls::pki_types::UnixTime;

use crate::config::Config;
use crate::control;
use crate::exit::Failure;
use crate::trust::{store, validate};

pub struct Args {
    pub controller: Option<String>,
    pub ca: PathBuf,
    pub node_id: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// Where the token comes from, in order: `--token-file`, RAKKR_ENROLL_TOKEN,
/// `$CREDENTIALS_DIRECTORY/rakkr-enroll-token` (systemd LoadCredential=).
fn token(file: Option<&Path>) -> anyhow::Result<(String, String)> {
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

pub fn run(config: &Config, a: Args) -> anyhow::Result<()> {
    let endpoint = match &a.controller {
        Some(url) => crate::config::endpoint_from_url(url).context(Failure::Config)?,
        None => config
            .controller
            .endpoint
            .clone()
            .context("no controller: give --controller rakkr://HOST:PORT or set controller.url")
            .context(Failure::Config)?,
    };
    let node_id = a
        .node_id
        .clone()
        .or_else(|| config.node.id.clone())
        .context("no node id: give --node-id or set node.id")
        .context(Failure::Config)?;
    let (token, from) = token(a.token_file.as_deref())?;
    let ca_pem = std::fs::read(&a.ca).map_err(|e| validate::Refusal::Unreadable {
        what: format!("CA bundle {}", a.ca.display()),
        detail: e.to_string(),
    })?;
    let cas =
        rakkr_protocol::tls::certs_from_pem(&ca_pem, &a.ca.display().to_string()).map_err(|e| {
            validate::Refusal::Unreadable {
                what: "CA bundle".into(),
                detail: e.to_string(),
            }
        })?;
    let tls = rakkr_protocol::tls::enroll_client_config(&cas)?;
    let (csr_der, key_pem) = crate::trust::renew::key_and_csr(&node_id)?;
    let target = Endpoint {
        address: endpoint.address(),
        server_name: rakkr_protocol::tls::server_name(&endpoint.server_name)?,
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client::enroll(
            &target,
            tls,
            rakkr_protocol::Enroll {
                node_id: node_id.clone(),
                token,
                csr_der,
            },
            config
                .controller
                .connect_timeout
                .max(Duration::from_secs(5)),
        ))
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
        Some(&node_id),
        UnixTime::now(),
    )?;
    let installed = store::install(
        &config.trust,
        &store::Pems {
            ca: &ca_pem,
            cert: chain_pem.as_bytes(),
            key: key_pem.as_bytes(),
        },
    )
    .context(Failure::TrustStore)?;
    let info = crate::trust::report(&config.trust);
    println!(
        "enrolled as {node_id} with {} (certificate valid until {}) in {}",
        endpoint.address(),
        info.certificate.map_or_else(|| "?".into(), |c| c.not_after),
        installed.display()
    );
    if let Ok(control::Reply::TrustReloaded { .. }) =
        control::request(&config.state_dir, &control::Request::ReloadTrust)
    {
        println!("the running agent connects with it now");
    }
    Ok(())
}
