//! The health job: owns the [`Monitor`], feeds it and reports its edges.
//!
//! - Meter windows from the engine (through the daemon's forwarder) are
//!   gathered into seconds of audio and observed for the level signals.
//! - Once a second: the device (missing, xruns) from the engine's status,
//!   disk and CPU pressure, the clock skew the link measured.
//!
//! Each edge becomes an `EventBody::Health` event (durable, exactly once,
//! like every event) and a log line; the current state is published on
//! `Node.health` for `status`.

use std::sync::Arc;
use std::time::Duration;

use rakkr_protocol::{EventBody, HealthSignal, Severity};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::engine::meter::Window;
use crate::health::debounce::Observation;
use crate::health::{HealthStatus, Monitor, Reading, levels, system};
use crate::node::Node;

const EVERY: Duration = Duration::from_secs(1);

/// What the once-a-second observations remember between ticks.
#[derive(Debug, Default)]
struct Ticks {
    /// The engine's loss counter at the last tick, for its stream.
    lost: Option<(String, u64)>,
    /// The device name and its inventory interface id.
    interface: Option<(String, String)>,
}

pub async fn run(
    node: Arc<Node>,
    mut windows: UnboundedReceiver<Box<Window>>,
    cancel: CancellationToken,
) {
    let mut settings = node.settings.subscribe();
    let mut monitor = Monitor::new(settings.borrow_and_update().health.clone());
    let mut seconds = levels::Seconds::default();
    let mut ticks = Ticks::default();
    // Read once a tick, not at every second of audio as well.
    let mut sync = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Ok(()) = settings.changed() => {
                let health = settings.borrow_and_update().health.clone();
                if health != *monitor.config() {
                    tracing::info!("health thresholds changed");
                    monitor.set_config(health);
                }
            }
            w = windows.recv() => {
                let Some(w) = w else { return };
                if let Some(second) = seconds.push(&w.sums, w.rate) {
                    for o in levels::observe(&second, monitor.config()) {
                        let reading = Reading::from((o, w.frame.interface_id.as_str()));
                        report(&node, &mut monitor, reading).await;
                    }
                    publish(&node, &monitor, &sync);
                }
            }
            _ = tick.tick() => {
                for reading in observe_system(&node, &monitor, &mut ticks).await {
                    if reading.signal == HealthSignal::DeviceUnavailable
                        && matches!(reading.observation, Observation::Bad(_))
                    {
                        // A partial second before a loss is not one second.
                        seconds.reset();
                    }
                    report(&node, &mut monitor, reading).await;
                }
                sync = Some(system::clock_sync());
                publish(&node, &monitor, &sync);
            }
        }
    }
}

fn publish(node: &Node, monitor: &Monitor, sync: &Option<system::ClockSync>) {
    node.health.send_replace(HealthStatus {
        signals: monitor.status(),
        clock: *node.clock.borrow(),
        clock_sync: sync.clone(),
    });
}

async fn report(node: &Arc<Node>, monitor: &mut Monitor, reading: Reading) {
    let Some(event) = monitor.observe(reading, crate::util::now_ms()) else {
        return;
    };
    let kind = event.signal.controller_type(event.raised);
    if event.raised {
        tracing::warn!(signal = kind, severity = event.severity.as_str(), summary = %event.summary, "health signal raised");
    } else {
        tracing::info!(signal = kind, summary = %event.summary, "health signal cleared");
    }
    if let Err(e) = node.emit(EventBody::Health(event)).await {
        tracing::error!(error = format!("{e:#}"), "could not queue a health event");
    }
}

fn reading(signal: HealthSignal, observation: Observation, value: f32, threshold: f32) -> Reading {
    Reading {
        signal,
        observation,
        interface_id: String::new(),
        channels: Vec::new(),
        value,
        threshold,
    }
}

async fn observe_system(node: &Arc<Node>, monitor: &Monitor, ticks: &mut Ticks) -> Vec<Reading> {
    let cfg = monitor.config().clone();
    let mut out = Vec::new();
    if let Some(status) = match node.recorder.get() {
        Some(r) => r.status().await.ok(),
        None => None,
    } {
        let interface = match &ticks.interface {
            Some((device, id)) if *device == status.device => id.clone(),
            _ if status.device.is_empty() => String::new(),
            _ => {
                let device = status.device.clone();
                let id = tokio::task::spawn_blocking(move || {
                    crate::inventory::audio::interface_id_of(&device)
                })
                .await
                .unwrap_or_default();
                ticks.interface = Some((status.device.clone(), id.clone()));
                id
            }
        };
        let mut device = reading(
            HealthSignal::DeviceUnavailable,
            if status.device_ok {
                Observation::Good
            } else {
                Observation::Bad(Severity::Critical)
            },
            if status.device_ok { 1.0 } else { 0.0 },
            1.0,
        );
        device.interface_id = interface.clone();
        out.push(device);
        // Losses since the last tick on the same stream (a reopened
        // stream counts from zero).
        let before = match &ticks.lost {
            Some((d, n)) if *d == status.device && *n <= status.lost => *n,
            _ => status.lost,
        };
        let new = status.lost - before;
        ticks.lost = Some((status.device.clone(), status.lost));
        if status.device_ok {
            let mut xrun = reading(
                HealthSignal::Xrun,
                if new > 0 {
                    Observation::Bad(Severity::Warning)
                } else {
                    Observation::Good
                },
                new as f32,
                1.0,
            );
            xrun.interface_id = interface;
            out.push(xrun);
        }
    }
    let recordings = node.config.recordings_path.clone();
    let (disk, load) = tokio::task::spawn_blocking(move || {
        (
            system::disk_used_percent(&recordings),
            system::load_per_core(),
        )
    })
    .await
    .unwrap_or((None, None));
    if let Some(p) = disk {
        let (w, c) = (
            f32::from(cfg.disk_warning_percent),
            f32::from(cfg.disk_critical_percent),
        );
        out.push(reading(
            HealthSignal::DiskPressure,
            system::pressure(p, w, c),
            p,
            w,
        ));
    }
    if let Some(l) = load {
        let (w, c) = (cfg.cpu_warning_per_core, cfg.cpu_critical_per_core);
        out.push(reading(
            HealthSignal::CpuPressure,
            system::pressure(l, w, c),
            l,
            w,
        ));
    }
    if let Some(e) = *node.clock.borrow() {
        let skew = e.offset_ms.unsigned_abs() as f32 / 1000.0;
        // Between the two thresholds the state stays (hysteresis by value).
        let o = if skew > cfg.clock_skew_warning_seconds {
            Observation::Bad(Severity::Warning)
        } else if skew <= cfg.clock_skew_recover_seconds {
            Observation::Good
        } else {
            Observation::Between
        };
        let threshold = if matches!(o, Observation::Good) {
            cfg.clock_skew_recover_seconds
        } else {
            cfg.clock_skew_warning_seconds
        };
        out.push(reading(HealthSignal::ClockSkew, o, skew, threshold));
    }
    out
}
