//! `rakkr-bridge`: parses, sets up logging, loads the configuration and
//! the fleet PKI, runs the bridge until SIGTERM / SIGINT; maps failures to
//! exit codes (2 configuration or PKI, 3 could not start). `node
//! bootstrap` has its own (see its help).

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Nodes' Rakkr credentials.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum NodeCommand {
    /// Trades a Rakkr bootstrap token and the node's SSH keypair for the
    /// node's controller token, and keeps it (revokes the node's earlier
    /// tokens). Exit 0 kept; 2 bad input; 4 refused; 5 controller
    /// unreachable; 6 not kept (the token is printed).
    Bootstrap {
        /// The node's id in Rakkr (`node_…`).
        node: String,
        /// The single-use `rakkr_bs_…` token (better from the environment).
        #[arg(long, env = "RAKKR_BOOTSTRAP_TOKEN", hide_env_values = true)]
        token: String,
        /// The node's SSH private key (mode 600), which Rakkr keeps to manage it.
        #[arg(long)]
        ssh_private_key: PathBuf,
        /// Its OpenSSH public key (default: the private key's path + `.pub`).
        #[arg(long)]
        ssh_public_key: Option<PathBuf>,
        /// The SSH user Rakkr logs in as.
        #[arg(long)]
        username: Option<String>,
    },
}

/// `node bootstrap`: the exit code.
fn node_command(config: &std::path::Path, command: NodeCommand) -> ExitCode {
    use rakkr_bridge::bootstrap::{self, BootstrapError};
    let NodeCommand::Bootstrap {
        node,
        token,
        ssh_private_key,
        ssh_public_key,
        username,
    } = command;
    let (api_url, creds, ids) =
        match rakkr_bridge::config::load_admin(config, &|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        };
    let public = ssh_public_key.unwrap_or_else(|| {
        let mut p = ssh_private_key.clone().into_os_string();
        p.push(".pub");
        p.into()
    });
    // Kept under our id when the map names one for this Rakkr id.
    let keep_as = ids
        .iter()
        .find(|(_, theirs)| **theirs == node)
        .map_or(node.as_str(), |(ours, _)| ours.as_str());
    let request = bootstrap::Request {
        node: &node,
        keep_as,
        bootstrap_token: &token,
        private_key: &ssh_private_key,
        public_key: &public,
        username: username.as_deref(),
    };
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BootstrapError::Unavailable(e.to_string()))
        .and_then(|rt| {
            rt.block_on(async {
                let credentials = rakkr_bridge::credentials::Credentials::open(&creds)
                    .map_err(|e| BootstrapError::Input(format!("{e:#}")))?;
                let api = rakkr_bridge::api::RakkrApi::new(&api_url);
                bootstrap::run(&api, &credentials, &request).await
            })
        });
    match done {
        Ok(()) => {
            println!(
                "node {node} bootstrapped: its controller token is kept in {}",
                creds.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            let code = match e {
                BootstrapError::Input(_) => 2,
                BootstrapError::Refused { .. } => 4,
                BootstrapError::NotKept { token, .. } => {
                    // The bootstrap token is spent: this is the only copy.
                    eprintln!(
                        "the node's controller token (keep it in {node}.token, mode 600): {token}"
                    );
                    6
                }
                _ => 5,
            };
            ExitCode::from(code)
        }
    }
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
        node_ids: c.node_ids.clone(),
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
    if let Some(Command::Node { command }) = args.command {
        return node_command(&args.config, command);
    }
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
