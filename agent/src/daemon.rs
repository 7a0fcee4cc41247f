//! `run`: the long-running service. One current-thread tokio runtime owns
//! networking and control (the link, the local control socket, signals);
//! audio threads, when they exist, never wait on it.
//!
//! Under systemd (`Type=notify`), `READY=1` follows start-up and the
//! `notify` task keeps `STATUS=` and the watchdog going (see `notify`).
//!
//! Shutdown on SIGTERM/SIGINT: record an `AgentStopping` event, stop the
//! tasks (the link flushes queued events and says Goodbye), exit 0 — all
//! within [`SHUTDOWN_GRACE`].

use std::time::Duration;

use anyhow::Context;
use rakkr_protocol::EventBody;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::command_log::CommandLog;
use crate::config::Config;
use crate::exit::Failure;
use crate::node::{LinkStatus, Node};
use crate::outbox::Outbox;
use crate::update::probation::OnStart;
use crate::update::state::UpdateState;

/// Upper bound for a clean shutdown after a signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped on a signal.
    Stopped,
    /// Stopped to be restarted (an update was installed or rolled back).
    Restart,
}

pub fn run(config: Config) -> anyhow::Result<Exit> {
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
    crate::state_dir::prepare(&config.state_dir).context(Failure::State)?;
    crate::update::clean_staging(&config.state_dir);
    let probation = match crate::update::probation::on_start(&config).context(Failure::State)? {
        OnStart::RolledBack => return Ok(Exit::Restart),
        OnStart::Probation(st) => Some(st),
        OnStart::Normal => None,
    };
    if crate::build_info::fault("exit-at-start") {
        anyhow::bail!("test fault: this build exits at start");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, probation))
}

async fn serve(config: Config, probation: Option<UpdateState>) -> anyhow::Result<Exit> {
    let state = config.state_dir.clone();
    let listener = crate::control::bind(&state)
        .await
        .context(Failure::AlreadyRunning)?;
    let outbox =
        Outbox::open(&state.join("outbox"), config.outbox_max_events).context(Failure::State)?;
    let commands = CommandLog::open(&state).context(Failure::State)?;
    // Takes a crash or power cut interrupted are repaired before anything
    // else can record into the same place.
    let recordings = config.recordings_path.clone();
    let recovered =
        tokio::task::spawn_blocking(move || crate::take::recover::recover_all(&recordings))
            .await
            .context("recovering interrupted takes")?
            .unwrap_or_else(|e| {
                tracing::error!(
                    error = format!("{e:#}"),
                    "could not look for interrupted takes"
                );
                crate::take::recover::Report::default()
            });
    let mut engine_cfg = crate::engine::EngineConfig::from_config(&config);
    // The show goes on: every take the crash interrupted continues as a
    // new take as soon as the device is open.
    for r in crate::take::resume::plan(
        &recovered.recovered,
        config.capture.resume_within,
        std::time::SystemTime::now(),
    ) {
        tracing::warn!(take = %r.take_id, continues = %r.continues, "an interrupted take goes on as a new take once the device is open");
        engine_cfg.autostart.push(crate::engine::StartRequest {
            channels: Some(r.channels),
            container: Some(r.container),
            segment: r.segment,
            continues: Some(r.continues),
            channel_list: (!r.device_channels.is_empty()).then_some(r.device_channels),
            job_id: r.job_id.unwrap_or_default(),
            ends_at_ms: r.ends_at_ms,
            ..crate::engine::StartRequest::named(&r.take_id)
        });
    }
    // Takes scheduled before a restart wait for their start again.
    let schedule_file = crate::engine::scheduled_file::path(&state);
    match crate::engine::scheduled_file::load(&schedule_file) {
        Ok(kept) => {
            for k in kept {
                tracing::info!(take = %k.take_id, at_ms = k.at_ms, "a scheduled take waits again for its start");
                engine_cfg.autostart.push(k.request());
            }
        }
        Err(e) => tracing::error!(error = format!("{e:#}"), "scheduled takes lost"),
    }
    engine_cfg.schedule_file = Some(schedule_file);
    let node = Node::new(config, outbox, commands);
    engine_cfg.clock = Some(node.clock.subscribe());
    engine_cfg.console = Some(node.console.subscribe());
    for r in &recovered.recovered {
        node.emit(crate::engine::events::recovered(&r.manifest))
            .await
            .context(Failure::State)?;
    }
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel();
    let (recorder, engine_thread) =
        crate::engine::Engine::spawn(engine_cfg, Box::new(move |o| drop(out_tx.send(o))))
            .context("starting the recorder")?;
    let _ = node.recorder.set(recorder.clone());
    // Engine outputs → events (durable), meter frames (latest wins) and
    // meter windows for health (every one: seconds of audio are counted).
    let (windows_tx, windows_rx) = tokio::sync::mpsc::unbounded_channel();
    let forwarder = {
        let node = node.clone();
        tokio::spawn(async move {
            use crate::engine::events::{Outgoing, outgoing};
            while let Some(o) = out_rx.recv().await {
                match outgoing(o) {
                    None => {}
                    Some(Outgoing::Listen(f)) => node.listen.offer(f),
                    Some(Outgoing::Meter(w)) => {
                        node.meter.send_replace(Some(w.frame.clone()));
                        let _ = windows_tx.send(w);
                    }
                    Some(Outgoing::Event(body)) => {
                        if let Err(e) = node.emit(body).await {
                            tracing::error!(
                                error = format!("{e:#}"),
                                "could not queue a recorder event"
                            );
                        }
                    }
                }
            }
        })
    };
    node.emit(EventBody::AgentStarted {
        version: crate::build_info::VERSION.into(),
    })
    .await
    .context(Failure::State)?;
    if let Err(e) = crate::jobs::probation::report(&node).await {
        tracing::error!(
            error = format!("{e:#}"),
            "could not report the last update's outcome"
        );
    }
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
    for note in &node.config.legacy_notes {
        tracing::warn!("{note}");
    }

    let cancel = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(crate::link::run(node.clone(), cancel.clone()));
    tasks.spawn(crate::jobs::renew::run(node.clone(), cancel.clone()));
    tasks.spawn(crate::jobs::retention::run(node.clone(), cancel.clone()));
    tasks.spawn(crate::jobs::console::run(node.clone(), cancel.clone()));
    tasks.spawn(crate::jobs::health::run(
        node.clone(),
        windows_rx,
        cancel.clone(),
    ));
    tasks.spawn(crate::control::serve(
        listener,
        node.clone(),
        cancel.clone(),
    ));
    if let Some(st) = probation {
        tokio::spawn(crate::jobs::probation::watch(node.clone(), st));
    }
    tasks.spawn(crate::notify::supervise(
        node.clone(),
        recorder.clone(),
        cancel.clone(),
    ));
    tasks.close();
    // NOTE: trust is read per connection attempt (it may be installed
    // later); without it the agent still serves, and STATUS says why.
    let trust_note = match crate::trust::load(&node.config.trust) {
        Ok(t) => format!("node {}", t.node_id),
        Err(e) => format!("no usable trust yet: {e:#}"),
    };
    crate::notify::ready(&format!("started, {trust_note}; controller {endpoint}"));

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = node.restart_requested() => RESTART,
    };
    tracing::info!(signal = why, "stopping");
    crate::notify::stopping(why);
    // A recording take is closed cleanly first, so its last events go out;
    // its manifest says why it ended early.
    recorder.shutdown(format!("the agent stopped: {why}")).await;
    let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), forwarder).await;
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
    Ok(if why == RESTART {
        Exit::Restart
    } else {
        Exit::Stopped
    })
}

/// The stop reason of a restart for an update.
const RESTART: &str = "restart for an update";
