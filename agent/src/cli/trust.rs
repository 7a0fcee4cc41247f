//! `trust show | install`: the node's trust store, with or without a
//! running daemon (both work on the state directory).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls::pki_types::UnixTime;

use crate::config::Config;
use crate::exit::Failure;
use crate::trust::{self, store, validate};
use crate::{control, util};

/// `trust show [--json]`. Exit 0 when the trust is usable, else the trust
/// failure code (4) after the report, which says what is missing.
pub fn show(config: &Config, json: bool) -> anyhow::Result<u8> {
    let report = trust::report(&config.trust);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("trust: {}", report.status);
        if let Some(reason) = &report.reason {
            println!("  {reason}");
        }
        println!("  CA bundle:   {}", report.ca_bundle_path);
        for fp in &report.ca_sha256 {
            println!("               sha256 {fp}");
        }
        println!("  certificate: {}", report.certificate_path);
        if let Some(c) = &report.certificate {
            println!("               subject {}", c.subject);
            println!("               issuer  {}", c.issuer);
            println!(
                "               valid   {} .. {} ({} days left)",
                c.not_before, c.not_after, c.days_left
            );
            println!("               sha256  {}", c.sha256);
        }
        println!("  private key: {}", report.private_key_path);
    }
    Ok(if report.status == "ok" {
        0
    } else {
        Failure::Trust.code()
    })
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The fleet CA bundle (PEM).
    #[arg(long, value_name = "PATH")]
    pub ca: PathBuf,
    /// The node certificate chain (PEM, leaf first).
    #[arg(long, value_name = "PATH")]
    pub cert: PathBuf,
    /// The node private key (PEM).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Do not ask a running agent to reconnect with it.
    #[arg(long)]
    pub no_reload: bool,
}

/// Reads an input file of `trust install`/`enroll`; unreadable is refusal 20.
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>, validate::Refusal> {
    std::fs::read(path).map_err(|e| validate::Refusal::Unreadable {
        what: format!("{what} {}", path.display()),
        detail: e.to_string(),
    })
}

/// The node id a new certificate must name: the configured one, else the
/// one in the certificate it replaces (none on a fresh node).
fn expected_node(config: &Config) -> Option<String> {
    config.node.id.clone().or_else(|| {
        let pem = std::fs::read(&config.trust.cert).ok()?;
        let certs = rakkr_protocol::tls::certs_from_pem(&pem, "").ok()?;
        rakkr_protocol::tls::common_name(certs.first()?).ok()
    })
}

/// `trust install`: check completely, install atomically, tell the daemon.
/// A refusal writes nothing.
pub fn install(config: &Config, a: InstallArgs) -> anyhow::Result<()> {
    let ca = read(&a.ca, "CA bundle")?;
    let cert = read(&a.cert, "certificate")?;
    let key = read(&a.key, "private key")?;
    let expected = expected_node(config);
    let checked = validate::check(&ca, &cert, &key, expected.as_deref(), UnixTime::now())?;
    let installed = store::install(
        &config.trust,
        &store::Pems {
            ca: &ca,
            cert: &cert,
            key: &key,
        },
    )
    .context(Failure::TrustStore)?;
    println!(
        "installed trust for node {} (certificate valid until {}) in {}",
        checked.node_id,
        util::iso8601(checked.not_after_unix),
        installed.display()
    );
    if a.no_reload {
        return Ok(());
    }
    match control::request(&config.state_dir, &control::Request::ReloadTrust) {
        Ok(control::Reply::TrustReloaded { node_id }) => {
            println!("the running agent reconnects as {node_id}");
            Ok(())
        }
        Ok(control::Reply::Error { message }) => Err(anyhow::anyhow!(
            "installed, but the running agent cannot use it: {message}"
        )
        .context(Failure::TrustStore)),
        Ok(other) => anyhow::bail!("unexpected reply from the agent: {other:?}"),
        Err(_) => {
            println!("no agent running here; it will use the new trust when it starts");
            Ok(())
        }
    }
}

/// `trust rotate`: the running agent renews now.
pub fn rotate(config: &Config) -> anyhow::Result<()> {
    match control::request(&config.state_dir, &control::Request::RotateTrust)
        .context(Failure::NoDaemon)?
    {
        control::Reply::RenewalStarted => {
            println!(
                "the agent is renewing its certificate; `trust show` tells when it is done (a TrustRenewed or TrustRenewFailed event goes to the controller)"
            );
            Ok(())
        }
        control::Reply::Error { message } => anyhow::bail!("the agent refused: {message}"),
        other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
    }
}
