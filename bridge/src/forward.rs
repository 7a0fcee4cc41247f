//! Toward the Rakkr controller, for each linked node: its heartbeat every
//! `heartbeat` (version, hostname, addresses, runtime, status
//! `recording` while a take runs) and its inventory when it links and
//! when it changes (`inventory`; the controller's shape).
//!
//! Each tick it also claims the node's queued jobs (`job`); when a node
//! links, its unfinished job takes are adopted.
//!
//! Threads: one task reads the controller library's events; each linked
//! node has a heartbeat task, ended when the node disconnects (job
//! runners are tasks of their own, which outlive the link).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rakkr_controller::ControllerEvent;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::api::RakkrApi;
use crate::credentials::Credentials;
use crate::metrics::Metrics;

type Takes = Arc<Mutex<HashMap<String, HashSet<String>>>>;
/// Each node's newest meter frame not yet posted (latest wins).
type Meters = Arc<Mutex<HashMap<String, rakkr_protocol::MeterFrame>>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a heartbeat carries, from the node's inventory.
pub fn heartbeat_of(inventory: &Value, recording: bool) -> Value {
    json!({
        "agentVersion": inventory["agentVersion"],
        "hostname": inventory["hostname"],
        "ipAddresses": inventory["ipAddresses"].as_array().map(|a| a.iter().take(16).cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "runtime": inventory["runtime"],
        "status": if recording { "recording" } else { "online" },
    })
}

/// Forwards until the controller's event stream ends.
pub async fn run(
    mut events: tokio::sync::broadcast::Receiver<ControllerEvent>,
    api: RakkrApi,
    credentials: Credentials,
    heartbeat: Duration,
    jobs: Arc<crate::job::Jobs>,
    metrics: Arc<Metrics>,
) {
    let mut linked: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        every: heartbeat,
        takes: Arc::default(),
        meters: Arc::default(),
        device_events: Arc::default(),
        handle: jobs.handle.clone(),
        jobs,
        metrics,
        listen: Arc::default(),
    });
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the forwarder fell behind the controller's events"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match e {
            ControllerEvent::Connected { node, hello, .. } => {
                let Some(token) = credentials.get(&node) else {
                    tracing::warn!(%node, "linked, but the bridge holds no Rakkr token for it: nothing is forwarded (enroll it with its token, or add <node>.token)");
                    continue;
                };
                let inventory: Value =
                    serde_json::from_str(&hello.inventory_json).unwrap_or(Value::Null);
                let task = tokio::spawn(node_loop(ctx.clone(), node.clone(), token, inventory));
                match linked.insert(node, task) {
                    Some(old) => old.abort(),
                    None => {
                        ctx.metrics.nodes_linked.inc();
                    }
                }
            }
            ControllerEvent::Listen { node, frame, .. } => {
                locked(&ctx.listen).entry(node).or_default().push(&frame);
            }
            ControllerEvent::Meter { node, frame } => {
                locked(&ctx.meters).insert(node, frame);
            }
            ControllerEvent::Event {
                node,
                event,
                duplicate: false,
            } => {
                if let rakkr_protocol::EventBody::Health(h) = &event.body {
                    let body = crate::health::event_json(h, event.seq, event.at_ms);
                    tokio::spawn(post_health(
                        ctx.clone(),
                        credentials.get(&node),
                        node.clone(),
                        body,
                    ));
                }
                // NOTE: a console found, swapped or renamed changes the
                // channel aliases, which label the meters.
                if matches!(
                    event.body,
                    rakkr_protocol::EventBody::DeviceLost { .. }
                        | rakkr_protocol::EventBody::DeviceBack { .. }
                        | rakkr_protocol::EventBody::Console(_)
                ) {
                    locked(&ctx.device_events).insert(node.clone());
                }
                let mut t = locked(&ctx.takes);
                match event.body {
                    rakkr_protocol::EventBody::TakeStarted(info) => {
                        t.entry(node).or_default().insert(info.take_id);
                    }
                    rakkr_protocol::EventBody::TakeStopped { take_id, .. } => {
                        t.entry(node).or_default().remove(&take_id);
                    }
                    _ => {}
                }
            }
            ControllerEvent::Disconnected { node, .. } => {
                if let Some(t) = linked.remove(&node) {
                    t.abort();
                    ctx.metrics.nodes_linked.dec();
                }
            }
            _ => {}
        }
    }
}

/// What every node's loop shares.
struct Ctx {
    api: RakkrApi,
    /// The tick: heartbeat, config poll, meter frame.
    every: Duration,
    /// The takes each node records (from its events), for the heartbeat.
    takes: Takes,
    meters: Meters,
    /// Nodes that reported their device lost or back, or a console
    /// event, since their last tick: their inventory is asked for again.
    device_events: Arc<Mutex<HashSet<String>>>,
    handle: rakkr_controller::ControllerHandle,
    jobs: Arc<crate::job::Jobs>,
    metrics: Arc<Metrics>,
    /// Each node's newest second of listen audio.
    listen: Arc<Mutex<HashMap<String, crate::listen::Buffer>>>,
}

async fn node_loop(ctx: Arc<Ctx>, node: String, token: String, inventory: Value) {
    let (api, every) = (&ctx.api, ctx.every);
    let mut config = crate::nodeconfig::Poll::default();
    let mut listen_renewed: Option<std::time::Instant> = None;
    let mut inventory = crate::inventory::Inventory::new(inventory);
    inventory.tick(api, &ctx.handle, &node, &token, false).await;
    ctx.jobs.adopt(&node, &token).await;
    let path = api.node_path(&node, "heartbeat");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let device_event = locked(&ctx.device_events).remove(&node);
        inventory
            .tick(api, &ctx.handle, &node, &token, device_event)
            .await;
        let inventory = &inventory.current;
        let recording = locked(&ctx.takes).get(&node).is_some_and(|t| !t.is_empty());
        match api
            .call(
                "POST",
                &path,
                &token,
                Some(heartbeat_of(inventory, recording)),
            )
            .await
        {
            Ok((202, _)) => Metrics::ok(&ctx.metrics.heartbeats, true),
            other => {
                Metrics::ok(&ctx.metrics.heartbeats, false);
                tracing::warn!(%node, answer = ?other, "heartbeat not accepted; next in {every:?}")
            }
        }
        config
            .tick(api, &ctx.handle, &node, &token, &ctx.metrics)
            .await;
        ctx.jobs.claim(&node, &token).await;
        listen_tick(&ctx, &node, &token, &mut listen_renewed).await;
        // Once per tick, as Rakkr's own agent: the newest frame.
        let frame = locked(&ctx.meters).remove(&node);
        if let Some(f) = frame {
            let body = crate::meters::frame_json(api.node_id(&node), &f, inventory);
            let path = api.node_path(&node, "meter-frame");
            let sent = api.call("POST", &path, &token, Some(body)).await;
            let ok = matches!(sent, Ok((202, _)));
            Metrics::ok(&ctx.metrics.meter_frames, ok);
            if !ok {
                tracing::warn!(%node, answer = ?sent, "meter frame not accepted");
            }
        }
    }
}

/// Keeps the node's listen stream running (renewed well within its
/// lease) and posts the newest second of it.
async fn listen_tick(ctx: &Ctx, node: &str, token: &str, renewed: &mut Option<std::time::Instant>) {
    let lease = Duration::from_millis(u64::from(rakkr_protocol::listen::LISTEN_LEASE_MS));
    if renewed.is_none_or(|t| t.elapsed() >= lease / 3) {
        *renewed = Some(std::time::Instant::now());
        let asked = ctx
            .handle
            .command(
                node,
                rakkr_protocol::CommandBody::Listen(crate::listen::request()),
                Duration::from_secs(10),
            )
            .await;
        if let Ok(r) = &asked
            && !matches!(r.outcome, rakkr_protocol::Outcome::Done(_))
        {
            tracing::debug!(%node, outcome = ?r.outcome, "no listen stream from the node");
        }
    }
    let chunk = locked(&ctx.listen).get_mut(node).and_then(|b| b.take());
    let Some((wav, first_ms, ms)) = chunk else {
        return;
    };
    let headers = vec![
        ("content-type", "audio/wav".to_owned()),
        ("x-rakkr-captured-at", crate::meters::iso_ms(first_ms)),
        ("x-rakkr-duration-ms", ms.to_string()),
    ];
    let path = ctx.api.node_path(node, "listen/chunk");
    let sent = ctx.api.post_bytes(&path, token, headers, wav).await;
    Metrics::ok(&ctx.metrics.listen_chunks, matches!(sent, Ok(202)));
    if !matches!(sent, Ok(202)) {
        tracing::warn!(%node, answer = ?sent, "listen chunk not accepted");
    }
}

/// How long a health edge is retried through a controller outage.
const HEALTH_PATIENCE: Duration = Duration::from_secs(600);

async fn post_health(ctx: Arc<Ctx>, token: Option<String>, node: String, body: Value) {
    let Some(token) = token else {
        tracing::warn!(%node, "a health event, but no Rakkr token for the node: not forwarded");
        return;
    };
    crate::health::deliver(
        &ctx.api,
        &ctx.metrics,
        &token,
        &node,
        &body,
        HEALTH_PATIENCE,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_made_of_the_nodes_inventory() {
        let inv = json!({"agentVersion": "2026.12.06-1", "hostname": "foh",
            "ipAddresses": (0..20).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>(),
            "runtime": {"architecture": "aarch64"}});
        let hb = heartbeat_of(&inv, true);
        assert_eq!(hb["agentVersion"], "2026.12.06-1");
        assert_eq!(hb["status"], "recording");
        assert_eq!(
            hb["ipAddresses"].as_array().unwrap().len(),
            16,
            "the API's bound"
        );
        assert_eq!(heartbeat_of(&inv, false)["status"], "online");
    }
}
