//! rakkr-bridge: our agents on a stock Rakkr controller. It terminates the
//! agents' mutual-TLS links (the reference controller's session handling:
//! the same TLS profile, enrollment, renewal, events, commands) and acts
//! toward the Rakkr controller's HTTP API as a well-behaved Rakkr node
//! would, for every linked node.
//!
//! Built so far: enrollment with a node's Rakkr token, vouched for by the
//! controller (`vouch`), the node's token kept as its only state
//! (`credentials`), heartbeats, inventory, meter frames and health edges
//! forwarded (`forward`, `meters`, `health`), the node config polled and
//! pushed (`nodeconfig`). Jobs,
//! delivery, meters, health and listen are to come (issue 22).
//!
//! Data flows one way: agent → controller library events → `forward` →
//! Rakkr API (`api`).

pub mod api;
pub mod config;
pub mod credentials;
pub mod forward;
pub mod health;
pub mod meters;
pub mod nodeconfig;
pub mod vouch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rakkr_controller::{Controller, ControllerConfig};

/// What a bridge needs to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where agents link (Rakkr's role points them at HOST:7443).
    pub listen: SocketAddr,
    /// The bridge's TLS (enrollment allowed: nodes without a certificate
    /// may enroll with their token).
    pub tls: Arc<rustls::ServerConfig>,
    /// Issues node certificates (enrollment and renewal).
    pub signer: Arc<dyn rakkr_controller::Signer>,
    /// The Rakkr controller's base URL.
    pub api_url: String,
    pub credentials: std::path::PathBuf,
    /// Between a node's heartbeats to the controller (Rakkr: 5 s).
    pub heartbeat: Duration,
}

/// A running bridge; [`Bridge::shutdown`] ends it.
#[derive(Debug)]
pub struct Bridge {
    controller: Controller,
    forward: tokio::task::JoinHandle<()>,
}

impl Bridge {
    pub async fn start(o: Options) -> anyhow::Result<Self> {
        let api = api::RakkrApi::new(&o.api_url);
        let credentials = credentials::Credentials::open(&o.credentials)?;
        let mut cfg = ControllerConfig::new(o.listen, o.tls);
        cfg.renewal = Some(o.signer);
        cfg.token_check = Some(Arc::new(vouch::Vouch {
            api: api.clone(),
            credentials: credentials.clone(),
        }));
        let controller = Controller::start(cfg).await?;
        let forward = tokio::spawn(forward::run(
            controller.handle().subscribe(),
            api,
            credentials,
            o.heartbeat,
            controller.handle(),
        ));
        Ok(Self {
            controller,
            forward,
        })
    }

    /// Where agents link.
    pub fn local_addr(&self) -> SocketAddr {
        self.controller.local_addr()
    }

    pub fn handle(&self) -> rakkr_controller::ControllerHandle {
        self.controller.handle()
    }

    pub async fn shutdown(self) {
        self.forward.abort();
        self.controller.shutdown().await;
    }
}
