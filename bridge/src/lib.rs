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
//! pushed (`nodeconfig`), listen chunks posted (`listen`), recording jobs
//! claimed, recorded and delivered chunk by chunk (`job`).
//!
//! Data flows one way: agent → controller library events → `forward` →
//! Rakkr API (`api`).

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod credentials;
pub mod forward;
pub mod health;
pub mod inventory;
pub mod job;
pub mod listen;
pub mod meters;
pub mod metrics;
pub mod nodeconfig;
pub mod vouch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
    /// Where `/healthz` and `/metrics` are served (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Take files pulled from nodes until delivered (a cache: nothing
    /// in it is needed after a restart).
    pub cache: std::path::PathBuf,
    /// How long a job's lease is kept while its node is away.
    pub lease_grace: Duration,
    /// Our node id → its Rakkr id, where they differ.
    pub node_ids: std::collections::BTreeMap<String, String>,
}

/// A running bridge; [`Bridge::shutdown`] ends it.
#[derive(Debug)]
pub struct Bridge {
    controller: Controller,
    forward: tokio::task::JoinHandle<()>,
    http: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    pub metrics: Arc<metrics::Metrics>,
}

impl Bridge {
    pub async fn start(o: Options) -> anyhow::Result<Self> {
        let api = api::RakkrApi::new(&o.api_url).with_node_ids(o.node_ids);
        let credentials = credentials::Credentials::open(&o.credentials)?;
        let metrics = Arc::new(metrics::Metrics::default());
        let http = match o.metrics_listen {
            None => None,
            Some(at) => {
                let listener = tokio::net::TcpListener::bind(at).await?;
                let addr = listener.local_addr()?;
                let app = metrics::routes(metrics.clone());
                Some((
                    addr,
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, app).await;
                    }),
                ))
            }
        };
        let mut cfg = ControllerConfig::new(o.listen, o.tls);
        cfg.renewal = Some(o.signer);
        cfg.token_check = Some(Arc::new(vouch::Vouch {
            api: api.clone(),
            credentials: credentials.clone(),
            metrics: metrics.clone(),
        }));
        std::fs::create_dir_all(&o.cache)
            .with_context(|| format!("creating the cache {}", o.cache.display()))?;
        cfg.takes = Some(o.cache.clone());
        cfg.pull = rakkr_controller::PullPolicy {
            take_prefix: job::TAKE_PREFIX.into(),
            deferred_receipts: true,
        };
        let controller = Controller::start(cfg).await?;
        let jobs = Arc::new(job::Jobs::new(
            api.clone(),
            controller.handle(),
            metrics.clone(),
            o.cache,
            o.lease_grace,
        ));
        let forward = tokio::spawn(forward::run(
            controller.handle().subscribe(),
            api,
            credentials,
            o.heartbeat,
            jobs,
            metrics.clone(),
        ));
        Ok(Self {
            controller,
            forward,
            http,
            metrics,
        })
    }

    /// Where agents link.
    pub fn local_addr(&self) -> SocketAddr {
        self.controller.local_addr()
    }

    pub fn handle(&self) -> rakkr_controller::ControllerHandle {
        self.controller.handle()
    }

    /// Where `/healthz` and `/metrics` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _)| *a)
    }

    pub async fn shutdown(self) {
        self.forward.abort();
        if let Some((_, t)) = &self.http {
            t.abort();
        }
        self.controller.shutdown().await;
    }
}
