//! `rakkr-bridge`: parses, sets up logging, loads the configuration and
//! the fleet PKI, runs the bridge until SIGTERM / SIGINT; maps failures to
//! exit codes (2 configuration or PKI, 3 could not start).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

/// Our agents on a stock Rakkr controller: terminates the agents' mutual-TLS
/// links and speaks the controller's recorder-node HTTP API for each node.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML); every key can also be set as RAKKR_BRIDGE_<KEY>.
    #[arg(long, env = "RAKKR_BRIDGE_CONFIG", default_value = rakkr_bridge::config::DEFAULT_PATH)]
    config: PathBuf,
}

fn read(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn setup(c: &rakkr_bridge::config::Config) -> anyhow::Result<rakkr_bridge::Options> {
    use rakkr_protocol::tls;
    let ca_pem = read(&c.ca_cert)?;
    let ca_certs = tls::certs_from_pem(&ca_pem, "ca_cert")?;
    let identity = tls::Identity::from_pem(&read(&c.cert)?, &read(&c.key)?, "cert")?;
    let tls = rakkr_controller::tls::server_config_for(
        &ca_certs,
        identity,
        tls::TLS13_ONLY,
        rakkr_controller::tls::ServerOptions {
            renewal_grace: Some(std::time::Duration::from_secs(7 * 86_400)),
            enrollment: true,
        },
    )?;
    let ca = rakkr_devpki::Ca::from_pem(
        &String::from_utf8_lossy(&ca_pem),
        &String::from_utf8_lossy(&read(&c.ca_key)?),
    )
    .context("ca_cert and ca_key are not a CA certificate and its key")?;
    Ok(rakkr_bridge::Options {
        listen: c.listen,
        tls,
        signer: Arc::new(rakkr_controller::renewal::Renewal::new(
            Arc::new(ca),
            c.node_cert_lifetime,
        )),
        api_url: c.api_url.clone(),
        credentials: c.credentials_dir.clone(),
        heartbeat: c.heartbeat,
        metrics_listen: c.metrics_listen,
        cache: c.cache_dir.clone(),
        lease_grace: c.lease_grace,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // NOTE: colours only on a terminal, never into the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAKKR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let opts = match rakkr_bridge::config::load(&args.config, &|k| std::env::var(k).ok())
        .and_then(|c| setup(&c))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(async move {
        let bridge = match rakkr_bridge::Bridge::start(opts).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: starting the bridge: {e:#}");
                return ExitCode::from(3);
            }
        };
        tracing::info!(listen = %bridge.local_addr(), metrics = ?bridge.metrics_addr(), "rakkr-bridge running");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        bridge.shutdown().await;
        ExitCode::SUCCESS
    })
}
