//! The daemon's console task: one UDP socket, the [`Session`] deciding
//! what is believed, and timers. It asks the console who it is every 2 s
//! (which is also how it notices it gone), renews the change subscription
//! every 7 s (X32 `/xremote`, WING `/*S`: both lapse after 10 s), reads
//! every name and the routing when the console is found, back or swapped
//! and again every minute (every 10 s on a WING, whose one subscription
//! another client may take), and reports edges as events.
//!
//! Queries leave at most 8 per 10 ms (a full WING read, 216 queries,
//! takes about 0.3 s): a console's OSC server is not hammered.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rakkr_console::presence::Edge;
use rakkr_protocol::{ConsoleEvent, EventBody};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::console::session::{Effect, Session};
use crate::console::{ConsoleView, neighbour, targets};
use crate::node::Node;

const IDENTITY_EVERY: Duration = Duration::from_secs(2);
const SUBSCRIBE_EVERY: Duration = Duration::from_secs(rakkr_console::x32::XREMOTE_EVERY_SECS);
const DISCOVER_EVERY: Duration = Duration::from_secs(30);
const DISCOVERY_WINDOW_MS: u64 = 1000;
const PACE: Duration = Duration::from_millis(10);
const PER_PACE: usize = 8;

fn refresh_every(wing: bool) -> Duration {
    Duration::from_secs(if wing { 10 } else { 60 })
}

pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let cfg = node.config.console.clone();
    if !cfg.enabled() {
        node.console.send_replace(Arc::new(ConsoleView::off()));
        return;
    }
    let mut session = Session::new(cfg.clone(), neighbour::mac_of);
    let socket = loop {
        match open(&cfg).await {
            Ok((socket, targets)) => {
                session.set_targets(targets);
                break socket;
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!(error = %why, "console: cannot start asking; trying again in 30 s");
                session.set_problem(Some(why));
                node.console.send_replace(Arc::new(session.view()));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }
    };
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut queue: VecDeque<(Vec<u8>, SocketAddr)> = VecDeque::new();
    let every = |d: Duration| {
        let mut i = tokio::time::interval(d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    };
    let (mut identity, mut subscribe, mut ticker) = (
        every(IDENTITY_EVERY),
        every(SUBSCRIBE_EVERY),
        every(Duration::from_secs(1)),
    );
    let mut refresh = every(refresh_every(false));
    let mut discover = every(DISCOVER_EVERY);
    let mut pace = every(PACE);
    let mut buf = vec![0u8; rakkr_console::osc::MAX_DATAGRAM + 1];
    let discovery_only = cfg.address.is_none();
    loop {
        // `None`: only queries were queued; the session (and so the view)
        // changes only by what is heard, discovery starting, and time.
        let effects = tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => Some(session.heard(&buf[..n], from, now())),
                Err(e) => {
                    // An ICMP "port unreachable" from a console that is off
                    // surfaces here on Linux: the console is silent, not us.
                    tracing::trace!(error = %e, "console socket");
                    None
                }
            },
            _ = identity.tick(), if asks_identity(&session, discovery_only) => {
                queue.extend(session.identity_queries());
                None
            }
            _ = subscribe.tick() => {
                queue.extend(session.subscribe());
                None
            }
            _ = refresh.tick() => {
                queue.extend(session.state_queries());
                None
            }
            _ = discover.tick(), if discovery_only && session.locked().is_none() && !session.discovering() => {
                session.start_discovery(now() + DISCOVERY_WINDOW_MS);
                queue.extend(targets::discovery(&cfg));
                Some(Vec::new())
            }
            _ = ticker.tick() => Some(session.tick(now())),
            _ = pace.tick(), if !queue.is_empty() => {
                for (q, to) in queue.drain(..queue.len().min(PER_PACE)) {
                    if let Err(e) = socket.send_to(&q, to).await {
                        tracing::trace!(%to, error = %e, "console query not sent");
                    }
                }
                None
            }
        };
        let Some(effects) = effects else { continue };
        for e in effects {
            match e {
                Effect::Refresh => {
                    // Subscribe first: a name changed while the names are
                    // being read is then told, not missed until the next read.
                    queue.extend(session.subscribe());
                    subscribe.reset();
                    queue.extend(session.state_queries());
                    let wing = session.family() == Some(rakkr_console::Family::Wing);
                    refresh = every(refresh_every(wing));
                    refresh.reset();
                }
                Effect::Edge(edge) => report(&node, *edge, session.view()).await,
                Effect::Renamed {
                    channel,
                    from,
                    to,
                    device_channels,
                } => renamed(&node, channel, from, to, device_channels).await,
            }
        }
        let view = session.view();
        node.console.send_if_modified(|old| {
            let changed = **old != view;
            if changed {
                *old = Arc::new(view);
            }
            changed
        });
    }
}

/// Identity queries go out unless discovery is still choosing a console.
fn asks_identity(session: &Session, discovery_only: bool) -> bool {
    let choosing = session.discovering() || (discovery_only && session.locked().is_none());
    !choosing
}

async fn open(
    cfg: &crate::config::ConsoleConfig,
) -> anyhow::Result<(UdpSocket, Vec<targets::Target>)> {
    use anyhow::Context;
    let c = cfg.clone();
    let ips = tokio::task::spawn_blocking(move || targets::resolve(&c))
        .await?
        .with_context(|| format!("resolving console.address {:?}", cfg.address))?;
    let v6 = ips.iter().any(|ip| ip.is_ipv6());
    let std = std::net::UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" })
        .context("opening a UDP socket for the console")?;
    std.set_broadcast(!v6).context("allowing broadcasts")?;
    std.set_nonblocking(true)?;
    Ok((UdpSocket::from_std(std)?, targets::for_address(cfg, &ips)))
}

async fn report(node: &Arc<Node>, edge: Edge, view: ConsoleView) {
    let Some(me) = view.identity() else { return };
    let wire = |id: &rakkr_console::Identity| rakkr_protocol::ConsoleIdentity {
        family: id.family.as_str().into(),
        model: id.model.clone(),
        name: id.name.clone(),
        firmware: id.firmware.clone(),
        serial: id.serial.clone(),
        mac: id.mac.clone(),
        address: me.address.clone(),
    };
    let event = match edge {
        Edge::Found(_) => {
            tracing::info!("console found: {}", view.summary());
            ConsoleEvent::Found { console: me }
        }
        Edge::Lost { silent_ms, .. } => {
            tracing::warn!(
                silent_ms,
                "console lost (recording goes on): {}",
                view.summary()
            );
            ConsoleEvent::Lost {
                console: me,
                silent_ms,
            }
        }
        Edge::Back { away_ms, .. } => {
            tracing::info!(away_ms, "console back: {}", view.summary());
            ConsoleEvent::Back {
                console: me,
                away_ms,
            }
        }
        Edge::Swapped { from, .. } => {
            let from = wire(&from);
            tracing::warn!(
                "console swapped: {} {:?} is now {}",
                from.model,
                from.name,
                view.summary()
            );
            ConsoleEvent::Swapped { from, to: me }
        }
        Edge::Firmware { from, .. } => {
            tracing::info!(from = %from, "console firmware changed: {}", view.summary());
            ConsoleEvent::FirmwareChanged { console: me, from }
        }
    };
    emit(node, event).await;
}

async fn renamed(node: &Arc<Node>, channel: u16, from: String, to: String, device: Vec<u16>) {
    let takes = match node.recorder.get() {
        Some(r) => (r
            .renamed(device.clone(), channel, from.clone(), to.clone())
            .await)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    tracing::info!(channel, from = %from, to = %to, takes = takes.len(), "console channel renamed");
    emit(
        node,
        ConsoleEvent::Renamed {
            console_channel: channel,
            device_channels: device,
            from,
            to,
            takes,
        },
    )
    .await;
}

async fn emit(node: &Arc<Node>, event: ConsoleEvent) {
    if let Err(e) = node.emit(EventBody::Console(Box::new(event))).await {
        tracing::error!(error = format!("{e:#}"), "could not queue a console event");
    }
}
