//! `trust enroll`: see `trust::enroll`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::control;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The controller, rakkr://HOST[:PORT]; default: controller.url.
    #[arg(long, value_name = "URL")]
    pub controller: Option<String>,
    /// The fleet CA bundle (PEM) that authenticates the controller.
    #[arg(long, value_name = "PATH")]
    pub ca: PathBuf,
    /// The node id to enroll as; default: node.id.
    #[arg(long)]
    pub node_id: Option<String>,
    /// A file holding the one-time token.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

pub fn run(config: &Config, a: Args) -> anyhow::Result<()> {
    let endpoint = match &a.controller {
        Some(url) => crate::config::endpoint_from_url(url, config.controller.bridge_port)
            .context(Failure::Config)?,
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
    let token = crate::trust::enroll::token(a.token_file.as_deref())?;
    let ca_pem = super::trust::read(&a.ca, "CA bundle")?;
    let installed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::trust::enroll::enroll(
            &config.trust,
            &endpoint,
            &node_id,
            token,
            ca_pem,
            config
                .controller
                .connect_timeout
                .max(Duration::from_secs(5)),
        ))?;
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
