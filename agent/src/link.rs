//! The controller connection: connect → Hello → Welcome, then serve until
//! it breaks; reconnect with backoff; never give up. Recording never waits
//! on this loop: events wait in the outbox while the link is down.
//!
//! Per connection: resend every unacknowledged event after Welcome, then
//! send new events as they are appended; answer commands; heartbeat; send
//! the latest meter frame when one is published (never queued).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rakkr_protocol::client::{self, AgentFramed, Endpoint, LinkError};
use rakkr_protocol::liveness::{Due, Liveness};
use rakkr_protocol::{AgentMsg, ControllerMsg, Goodbye, GoodbyeReason, Hello};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::build_info;
use crate::node::{LinkStatus, Node};

/// How long a welcomed session must last before the reconnect backoff
/// starts over.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// Runs until `cancel` fires.
mod reads;

pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let c = &node.config.controller;
    let mut backoff = Backoff::new(c.backoff_initial, c.backoff_max);
    loop {
        node.status.send_replace(LinkStatus::Connecting {
            attempt: backoff.attempt() + 1,
        });
        let mut welcomed = None;
        // NOTE: new trust (`trust install`) ends the session at once; what
        // was in flight is resent by the next session (nothing is acked yet).
        let result = tokio::select! {
            r = session(&node, &cancel, &mut welcomed) => r,
            _ = node.reload_trust.notified() => {
                tracing::info!("reconnecting with the newly installed trust");
                backoff.reset();
                continue;
            }
        };
        // NOTE: a welcome alone does not reset the backoff: a controller
        // that welcomes and then drops or breaks the session would get a
        // reconnect every second. Only a session that stayed up resets it.
        if welcomed.is_some_and(|at| at.elapsed() >= HEALTHY_SESSION) {
            backoff.reset();
        }
        let reason = match result {
            Ok(()) => return,
            Err(e) => format!("{e:#}"),
        };
        let delay = backoff.next_delay();
        tracing::warn!(error = %reason, retry_in = ?delay, "controller link down");
        node.status.send_replace(LinkStatus::Disconnected {
            reason,
            retry_in_ms: delay.as_millis() as u64,
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
            _ = node.reload_trust.notified() => backoff.reset(),
        }
    }
}

async fn session(
    node: &Arc<Node>,
    cancel: &CancellationToken,
    welcomed: &mut Option<std::time::Instant>,
) -> anyhow::Result<()> {
    let cfg = &node.config;
    let ep = cfg
        .controller
        .endpoint
        .as_ref()
        .context("no controller configured")?;
    if build_info::fault("no-connect") {
        anyhow::bail!("test fault: this build cannot connect");
    }
    let trust = crate::trust::load(&cfg.trust).context("loading the node's trust material")?;
    let node_id = cfg.node.id.clone().unwrap_or_else(|| trust.node_id.clone());
    let inventory_json = node.inventory_json().await?;
    let hello = Hello {
        versions: rakkr_protocol::version::SUPPORTED,
        agent_version: build_info::VERSION.to_owned(),
        build_target: build_info::TARGET.to_owned(),
        node_id: node_id.clone(),
        inventory_json,
        resume: node.resume(),
    };
    let endpoint = Endpoint {
        address: ep.address(),
        server_name: rakkr_protocol::tls::server_name(&ep.server_name)?,
    };
    let connect = client::handshake(
        &endpoint,
        trust.client_config,
        hello,
        cfg.controller.connect_timeout,
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = trust.not_after_unix < now;
    let (mut framed, handshake) = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = connect => match r {
            Ok(ok) => ok,
            // NOTE: a controller that accepts expired certificates for
            // renewal lets a recently expired one in; past its grace the
            // TLS handshake fails, and only enrollment helps.
            Err(e @ rakkr_protocol::client::LinkError::Tls { .. }) if expired => {
                return Err(anyhow::Error::new(e).context(format!(
                    "the node certificate expired at {} and the controller no longer accepts it even for renewal: this node must be enrolled again (rakkr-recorder-agent trust enroll)",
                    crate::util::iso8601(trust.not_after_unix)
                )));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let welcome = match handshake {
        client::Handshake::Welcome(w) => w,
        client::Handshake::RenewalOnly(message) => {
            tracing::warn!(%message, "the node certificate has expired; the controller lets it in to renew only");
            node.status.send_replace(LinkStatus::RenewalOnly {
                controller: endpoint.address.clone(),
                reason: message,
            });
            // NOTE: the renewal task sees the certificate is past due and
            // renews on this session (no extra nudge: it would renew twice).
            return serve_renewal_only(node, cancel, &mut framed, &endpoint.address).await;
        }
    };
    *welcomed = Some(std::time::Instant::now());
    let chain = framed
        .get_ref()
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    node.trust.set_controller_chain(chain);
    let skew_ms = welcome.server_time_ms as i64 - crate::util::now_ms() as i64;
    if skew_ms.abs() > 5_000 {
        tracing::warn!(
            skew_ms,
            "clock differs from the controller's by more than 5 s; check NTP"
        );
    }
    tracing::info!(
        controller = %endpoint.address,
        %node_id,
        protocol = welcome.version,
        heartbeat_ms = welcome.heartbeat_ms,
        resume_from = welcome.resume_from,
        "connected to controller"
    );
    node.status.send_replace(LinkStatus::Connected {
        controller: endpoint.address.clone(),
        since: crate::util::now_iso8601(),
        protocol: welcome.version,
    });
    if let Some(held) = welcome.resume_from.checked_sub(1) {
        node.ack(held).await?;
    }
    {
        // Requests queued for the previous connection are stale: the
        // transfer asks again from its offset when it sees the new session.
        let mut stale = node.update.fetch_rx.lock().await;
        while stale.try_recv().is_ok() {}
    }
    node.sessions.send_modify(|n| *n += 1);
    let peer_hb = Duration::from_millis(u64::from(welcome.heartbeat_ms.max(10)));
    let mut live = Liveness::new(peer_hb.min(cfg.controller.heartbeat), peer_hb);
    let session = Session {
        address: endpoint.address.clone(),
        version: welcome.version,
        probe_every: peer_hb.min(cfg.controller.heartbeat),
    };
    let result = serve(node, cancel, &mut framed, &mut live, &session).await;
    // A listen stream belongs to the session that asked for it.
    if let Some(rec) = node.recorder.get() {
        rec.end_listen("the link dropped");
    }
    if let Err(LinkError::Protocol(e)) = &result {
        // Tell the controller why before closing; best effort.
        let bye = Goodbye {
            reason: GoodbyeReason::ProtocolError,
            message: e.to_string(),
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(1), framed.send(AgentMsg::Goodbye(bye))).await;
    }
    result.map_err(anyhow::Error::from)
}

async fn send(
    framed: &mut AgentFramed,
    live: &mut Liveness,
    msg: AgentMsg,
    address: &str,
) -> Result<(), LinkError> {
    framed
        .send(msg)
        .await
        .map_err(|e| LinkError::from_send(e, address))?;
    live.sent();
    Ok(())
}

/// Events sent per turn of the session loop, so that a long backlog (after
/// an outage) never holds back commands, heartbeats or meter frames.
const EVENT_BATCH: usize = 64;

/// Sends the next batch of unsent events; returns whether more wait.
async fn send_pending(
    node: &Node,
    framed: &mut AgentFramed,
    live: &mut Liveness,
    sent: &mut Option<u64>,
    address: &str,
    version: u16,
) -> Result<bool, LinkError> {
    let batch = node.pending_after(*sent, EVENT_BATCH);
    let more = batch.len() == EVENT_BATCH;
    for mut ev in batch {
        let seq = ev.seq;
        // An event queued by an older agent may be over the limit: it is
        // replaced, with its sequence number, never left to block the stream.
        ev.body = crate::fit::for_version(crate::fit::within_limit(ev.body), version);
        send(framed, live, AgentMsg::Event(ev), address).await?;
        *sent = Some(seq);
    }
    Ok(more)
}

/// What a session runs with.
struct Session {
    address: String,
    /// The negotiated protocol version.
    version: u16,
    /// Between clock probes.
    probe_every: Duration,
}

async fn serve(
    node: &Arc<Node>,
    cancel: &CancellationToken,
    framed: &mut AgentFramed,
    live: &mut Liveness,
    session: &Session,
) -> Result<(), LinkError> {
    let address = session.address.as_str();
    let version = session.version;
    let mut sent: Option<u64> = None;
    // NOTE: the clock is probed only where the controller knows the probe
    // (protocol 2); the first probe goes out at once.
    let mut probes = tokio::time::interval(session.probe_every);
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = crate::health::clock::Filter::default();
    // The backlog drains batch by batch through the loop below.
    node.new_events.notify_one();
    let mut meter = node.meter.subscribe();
    meter.mark_unchanged();
    // NOTE: one session at a time holds the transfer and renewal requests.
    let mut fetches = node.update.fetch_rx.lock().await;
    let mut renewals = node.trust.requests_rx.lock().await;
    let mut listen = node.listen.rx.lock().await;
    // Frames queued for an earlier session are stale.
    while listen.try_recv().is_ok() {}
    let (results_tx, mut results_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = node.settings.subscribe();
    let mut reads = reads::Reads::start(
        node.config.recordings_path.clone(),
        Box::new(move || settings.borrow().transfer_max_bytes_per_second),
    )
    .map_err(|e| LinkError::Io(format!("starting the take reader: {e}")))?;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Flush what is queued (it is resent anyway if unacknowledged), then close.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while send_pending(node, framed, live, &mut sent, address, version).await? {}
                    let bye = Goodbye { reason: GoodbyeReason::Shutdown, message: "agent stopping".into() };
                    send(framed, live, AgentMsg::Goodbye(bye), address).await?;
                    let _ = framed.close().await;
                    Ok::<_, LinkError>(())
                }).await;
                return Ok(());
            }
            incoming = framed.next() => {
                live.received();
                match incoming {
                    None => return Err(LinkError::Closed { during: "while connected" }),
                    Some(Err(e)) => return Err(LinkError::from_frame(e, address)),
                    Some(Ok(ControllerMsg::Heartbeat)) => {}
                    Some(Ok(ControllerMsg::ClockReply(r))) => {
                        let probe = crate::health::clock::Probe {
                            t1: r.probe_sent_ms,
                            t2: r.received_ms,
                            t3: r.replied_ms,
                            t4: crate::util::now_ms(),
                        };
                        if let Some(estimate) = clock.add(probe) {
                            node.clock.send_replace(Some(estimate));
                        }
                    }
                    Some(Ok(ControllerMsg::Ack(ack))) => {
                        if let Err(e) = node.ack(ack.up_to).await {
                            tracing::error!(error = format!("{e:#}"), "could not apply acknowledgement");
                        }
                    }
                    Some(Ok(ControllerMsg::Command(cmd))) => {
                        // NOTE: off the loop: a command that takes long (a
                        // StopTake closing an hour of files, a slow disk)
                        // must not hold back heartbeats, meters or acks.
                        let (node, tx) = (node.clone(), results_tx.clone());
                        tokio::spawn(async move {
                            let _ = tx.send(crate::dispatch::execute(&node, cmd).await);
                        });
                    }
                    Some(Ok(ControllerMsg::Chunk(c))) => node.update.deliver(Ok(c)),
                    Some(Ok(ControllerMsg::TransferFailed { transfer_id, message })) => {
                        node.update.deliver(Err(format!("{transfer_id}: {message}")));
                    }
                    Some(Ok(ControllerMsg::Renewed { request_id, chain_pem })) => {
                        node.trust.deliver(request_id, Ok(chain_pem));
                    }
                    Some(Ok(ControllerMsg::RenewRefused { request_id, message })) => {
                        node.trust.deliver(request_id, Err(message));
                    }
                    Some(Ok(ControllerMsg::ReadFile(r))) => {
                        if let Err(refused) = reads.submit(r) {
                            send(framed, live, *refused, address).await?;
                        }
                    }
                    Some(Ok(ControllerMsg::Goodbye(g))) => {
                        tracing::info!(reason = ?g.reason, message = %g.message, "controller said goodbye");
                        return Err(LinkError::Closed { during: "by the controller's Goodbye" });
                    }
                    Some(Ok(other @ (ControllerMsg::Welcome(_) | ControllerMsg::Reject(_) | ControllerMsg::RenewalOnly { .. } | ControllerMsg::Enrolled { .. } | ControllerMsg::EnrollRefused { .. }))) => {
                        return Err(LinkError::Unexpected { got: other.kind(), during: "after the handshake" });
                    }
                }
            }
            // NOTE: meters before events: the latest frame goes out at once
            // and is never queued behind an event backlog.
            changed = meter.changed() => {
                if changed.is_ok() {
                    let frame = meter.borrow_and_update().clone();
                    if let Some(frame) = frame {
                        send(framed, live, AgentMsg::Meter(frame), address).await?;
                    }
                }
            }
            Some(r) = results_rx.recv() => {
                send(framed, live, AgentMsg::Result(r), address).await?;
            }
            Some(f) = fetches.recv() => {
                send(framed, live, AgentMsg::Fetch(f), address).await?;
            }
            Some(r) = renewals.recv() => {
                send(framed, live, AgentMsg::Renew(r), address).await?;
            }
            _ = probes.tick(), if version >= rakkr_protocol::version::HEALTH => {
                // NOTE: not counted as sending for liveness: heartbeats
                // keep their own rhythm (the controller counts them).
                let probe = AgentMsg::ClockProbe { sent_ms: crate::util::now_ms() };
                framed.send(probe).await.map_err(|e| LinkError::from_send(e, address))?;
            }
            _ = node.new_events.notified() => {
                if send_pending(node, framed, live, &mut sent, address, version).await? {
                    node.new_events.notify_one();
                }
            }
            _ = tokio::time::sleep_until(live.deadline()) => {
                match live.due(tokio::time::Instant::now()) {
                    Due::Dead => return Err(LinkError::Dead(live.dead_after())),
                    Due::Heartbeat => send(framed, live, AgentMsg::Heartbeat, address).await?,
                    Due::Nothing => {}
                }
            }
            // NOTE: bulk last: a take's bytes go out only when nothing
            // above is ready, one chunk per turn.
            Some(answer) = reads.answers.recv() => {
                send(framed, live, answer, address).await?;
            }
            // NOTE: listening last of all: it never holds back anything.
            Some(frame) = listen.recv() => {
                send(framed, live, AgentMsg::Listen(frame), address).await?;
            }
        }
    }
}

/// A renewal-only session: sends the renewal task's request and hands the
/// answer back; ends when the controller closes it (after issuing).
async fn serve_renewal_only(
    node: &Arc<Node>,
    cancel: &CancellationToken,
    framed: &mut AgentFramed,
    address: &str,
) -> anyhow::Result<()> {
    let mut renewals = node.trust.requests_rx.lock().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            Some(r) = renewals.recv() => {
                framed.send(AgentMsg::Renew(r)).await.map_err(|e| LinkError::from_frame(e, address))?;
            }
            incoming = framed.next() => match incoming {
                None => anyhow::bail!("the renewal-only session ended"),
                Some(Err(e)) => return Err(LinkError::from_frame(e, address).into()),
                Some(Ok(ControllerMsg::Renewed { request_id, chain_pem })) => {
                    node.trust.deliver(request_id, Ok(chain_pem));
                }
                Some(Ok(ControllerMsg::RenewRefused { request_id, message })) => {
                    node.trust.deliver(request_id, Err(message));
                }
                Some(Ok(ControllerMsg::Heartbeat)) => {}
                Some(Ok(other)) => anyhow::bail!("renewal-only session: unexpected {}", other.kind()),
            },
        }
    }
}

#[cfg(test)]
mod tests;
