//! `run`: the long-running service. One current-thread tokio runtime owns
//! networking and control (the link, the local control socket, signals);
//! audio threads, when they exist, never wait on it.
//!
//! Shutdown on SIGTERM/SIGINT: record an `AgentStopping` event, stop the
//! tasks (the link flushes queued events and says Goodbye), exit 0 — all
//! within [`SHUTDOWN_GRACE`].

use std::time::Duration;

use anyhow::Context;
use rakkr_protocol::EventBody;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::commands::CommandLog;
use crate::config::Config;
use crate::exit::Failure;
use crate::node::{LinkStatus, Node};
use crate::outbox::Outbox;

/// Upper bound for a clean shutdown after a signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

pub fn run(config: Config) -> anyhow::Result<()> {
    if config.controller.endpoint.is_none() {
        return Err(anyhow::anyhow!(
            "no controller configured: set controller.url in {} or RAKKR_CONTROLLER_URL",
            config
                .source
                .as_ref()
                .map_or(crate::config::DEFAULT_PATH.into(), |p| p
                    .display()
                    .to_string())
        )
        .context(Failure::Config));
    }
    crate::state::prepare(&config.state_dir).context(Failure::State)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let state = config.state_dir.clone();
    let listener = crate::control::bind(&state)
        .await
        .context(Failure::AlreadyRunning)?;
    let outbox =
        Outbox::open(&state.join("outbox"), config.outbox_max_events).context(Failure::State)?;
    let commands = CommandLog::open(state.join("commands.json")).context(Failure::State)?;
    let node = Node::new(config, outbox, commands);
    node.emit(EventBody::AgentStarted {
        version: crate::build_info::VERSION.into(),
    })
    .await
    .context(Failure::State)?;
    let endpoint = node
        .config
        .controller
        .endpoint
        .as_ref()
        .map(|e| e.url.clone())
        .unwrap_or_default();
    tracing::info!(
        version = crate::build_info::VERSION,
        state_dir = %state.display(),
        controller = %endpoint,
        "agent started"
    );

    let cancel = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(crate::link::run(node.clone(), cancel.clone()));
    tasks.spawn(crate::control::serve(
        listener,
        node.clone(),
        cancel.clone(),
    ));
    tasks.close();

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = why, "stopping");
    node.status.send_replace(LinkStatus::Stopping);
    if let Err(e) = node
        .emit(EventBody::AgentStopping { reason: why.into() })
        .await
    {
        tracing::error!(error = format!("{e:#}"), "could not record the stop event");
    }
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks did not finish within {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}
