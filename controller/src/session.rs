//! One agent connection on the controller: TLS accept → node id from the
//! client certificate → Hello → Welcome | Reject → message loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::counting::{Counters, Counting};
use super::{ControllerEvent, NodeEntry, NodeInfo, Outgoing, Shared, lock};
use crate::store::Accepted;
use rakkr_protocol::frame::FrameCodec;
use rakkr_protocol::liveness::{Due, Liveness};
use rakkr_protocol::message::{
    Ack, AgentMsg, Chunk, ControllerMsg, Fetch, Goodbye, GoodbyeReason, Hello, MAX_CHUNK_LEN,
    Reject, RejectReason, Welcome,
};

type ServerFramed = Framed<
    tokio_rustls::server::TlsStream<Counting<TcpStream>>,
    FrameCodec<AgentMsg, ControllerMsg>,
>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    session: u64,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = serve(&shared, acceptor, tcp, peer, session) => {}
    }
}

fn fail(shared: &Shared, peer: SocketAddr, error: String) {
    tracing::warn!(%peer, %error, "agent handshake failed");
    shared.emit(ControllerEvent::HandshakeFailed { peer, error });
}

async fn serve(
    shared: &Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    session: u64,
) {
    let timeout = shared.config.handshake_timeout;
    let _ = tcp.set_nodelay(true);
    let counters = Arc::new(Counters::default());
    let tls = match tokio::time::timeout(
        timeout,
        acceptor.accept(Counting::new(tcp, counters.clone())),
    )
    .await
    {
        Err(_) => {
            return fail(
                shared,
                peer,
                format!("TLS handshake timed out after {timeout:?}"),
            );
        }
        Ok(Err(e)) => return fail(shared, peer, rakkr_protocol::tls::explain(&e)),
        Ok(Ok(tls)) => tls,
    };
    let (_, conn) = tls.get_ref();
    if conn.alpn_protocol() != Some(rakkr_protocol::tls::ALPN) {
        return fail(
            shared,
            peer,
            "client did not negotiate ALPN rakkr-agent/1".into(),
        );
    }
    let (certified, cert_sha256, not_after) = match conn.peer_certificates().and_then(|c| c.first())
    {
        // Only a TLS configuration that allows enrollment gets here
        // without a certificate: such a session may only enroll.
        None => {
            let framed: ServerFramed = Framed::new(tls, FrameCodec::default());
            return enroll(shared, peer, framed).await;
        }
        Some(cert) => match rakkr_protocol::tls::common_name(cert) {
            Ok(cn) => {
                use sha2::Digest;
                (
                    cn,
                    hex::encode(sha2::Sha256::digest(cert.as_ref())),
                    super::grace::not_after(cert),
                )
            }
            Err(e) => return fail(shared, peer, e.to_string()),
        },
    };
    // Accepted by the grace verifier although expired: renewal only.
    let expired = not_after.is_some_and(|na| na < (now_ms() / 1000) as i64);
    if lock(&shared.revoked).contains(&cert_sha256) {
        return fail(
            shared,
            peer,
            format!("{certified}: certificate {cert_sha256} is revoked"),
        );
    }
    let mut framed: ServerFramed = Framed::new(tls, FrameCodec::default());
    let hello = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok(AgentMsg::Hello(h)))) => h,
        Ok(Some(Ok(other))) => {
            return fail(
                shared,
                peer,
                format!("{certified}: expected Hello, got {}", other.kind()),
            );
        }
        Ok(Some(Err(e))) => return fail(shared, peer, format!("{certified}: {e}")),
        Ok(None) => return fail(shared, peer, format!("{certified}: closed before Hello")),
        Err(_) => {
            return fail(
                shared,
                peer,
                format!("{certified}: no Hello within {timeout:?}"),
            );
        }
    };
    let offered = shared.config.versions;
    let reject = if hello.node_id != certified {
        Some(Reject {
            message: format!(
                "Hello claims node id {:?} but the client certificate names {:?}",
                hello.node_id, certified
            ),
            reason: RejectReason::NodeIdMismatch {
                claimed: hello.node_id.clone(),
                certified: certified.clone(),
            },
        })
    } else if rakkr_protocol::version::negotiate(hello.versions, offered).is_none() {
        Some(Reject {
            message: format!(
                "no common protocol version: agent speaks {}, controller speaks {}",
                hello.versions, offered
            ),
            reason: RejectReason::NoCommonVersion {
                agent: hello.versions,
                controller: offered,
            },
        })
    } else {
        None
    };
    if let Some(reject) = reject {
        tracing::warn!(node = %certified, %peer, reason = %reject.message, "rejecting agent");
        let _ = framed.send(ControllerMsg::Reject(reject.clone())).await;
        let _ = framed.get_mut().shutdown().await;
        shared.emit(ControllerEvent::Rejected {
            node: certified,
            peer,
            reject,
        });
        return;
    }
    if expired {
        return renewal_only(shared, &certified, peer, framed).await;
    }
    let version =
        rakkr_protocol::version::negotiate(hello.versions, offered).unwrap_or(offered.max);
    let welcome = Welcome {
        version,
        heartbeat_ms: u32::try_from(shared.config.heartbeat.as_millis()).unwrap_or(u32::MAX),
        server_time_ms: now_ms(),
        resume_from: lock(&shared.store).resume_from(&certified, hello.resume.stream_id),
    };
    if let Err(e) = framed.send(ControllerMsg::Welcome(welcome)).await {
        return fail(shared, peer, format!("{certified}: sending Welcome: {e}"));
    }
    let (tx, rx) = mpsc::channel(256);
    let node = certified;
    let replaced = lock(&shared.nodes).insert(
        node.clone(),
        NodeEntry {
            info: NodeInfo {
                node_id: node.clone(),
                peer,
                version,
                hello: hello.clone(),
                heartbeats: 0,
                counters,
            },
            tx,
            session,
        },
    );
    if let Some(old) = replaced {
        let _ = old.tx.try_send(Outgoing::Close(GoodbyeReason::Replaced));
    }
    tracing::info!(%node, %peer, version, agent = %hello.agent_version, "agent connected");
    shared.emit(ControllerEvent::Connected {
        node: node.clone(),
        peer,
        version,
        cert_sha256,
        hello: Box::new(hello.clone()),
    });
    let puller = shared.config.takes.clone().map(|takes| {
        let (tx, replies) = mpsc::channel(64);
        lock(&shared.file_replies).insert(node.clone(), (session, tx));
        let poke = Arc::new(tokio::sync::Notify::new());
        lock(&shared.pull_pokes).insert(node.clone(), (session, poke.clone()));
        tokio::spawn(
            crate::takes::Puller {
                handle: crate::ControllerHandle {
                    shared: shared.clone(),
                },
                node: node.clone(),
                dir: takes.join(&node),
                replies,
                poke,
                next_request: 0,
                policy: shared.config.pull.clone(),
                verified: Default::default(),
            }
            .run(),
        )
    });
    let reason = session_loop(shared, &node, &hello, &mut framed, rx).await;
    if let Some(p) = puller {
        p.abort();
        let mut replies = lock(&shared.file_replies);
        if replies.get(&node).is_some_and(|(s, _)| *s == session) {
            replies.remove(&node);
        }
        drop(replies);
        let mut pokes = lock(&shared.pull_pokes);
        if pokes.get(&node).is_some_and(|(s, _)| *s == session) {
            pokes.remove(&node);
        }
    }
    {
        let mut nodes = lock(&shared.nodes);
        if nodes.get(&node).is_some_and(|e| e.session == session) {
            nodes.remove(&node);
        }
    }
    tracing::info!(%node, %reason, "agent disconnected");
    shared.emit(ControllerEvent::Disconnected { node, reason });
}

async fn session_loop(
    shared: &Arc<Shared>,
    node: &str,
    hello: &Hello,
    framed: &mut ServerFramed,
    mut rx: mpsc::Receiver<Outgoing>,
) -> String {
    let hb = shared.config.heartbeat;
    let mut live = Liveness::new(hb, hb);
    loop {
        tokio::select! {
            incoming = framed.next() => {
                live.received();
                let msg = match incoming {
                    None => return "connection closed by the agent".into(),
                    Some(Err(e)) => {
                        let error = e.to_string();
                        if e.is_protocol_violation() {
                            shared.emit(ControllerEvent::ProtocolError { node: node.into(), error: error.clone() });
                            let _ = framed.send(ControllerMsg::Goodbye(Goodbye {
                                reason: GoodbyeReason::ProtocolError,
                                message: error.clone(),
                            })).await;
                        }
                        return error;
                    }
                    Some(Ok(m)) => m,
                };
                match handle(shared, node, hello, msg) {
                    Ok(Some(reply)) => {
                        if let Err(e) = framed.send(reply).await {
                            return e.to_string();
                        }
                        live.sent();
                    }
                    Ok(None) => {}
                    Err(reason) => return reason,
                }
            }
            out = rx.recv() => {
                let res = match out {
                    None => return "controller dropped the session".into(),
                    Some(Outgoing::Msg(m)) => framed.send(m).await.map_err(|e| e.to_string()),
                    Some(Outgoing::Raw(bytes)) => {
                        let io = framed.get_mut();
                        match io.write_all(&bytes).await {
                            Ok(()) => io.flush().await.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Some(Outgoing::Close(reason)) => {
                        let _ = framed.send(ControllerMsg::Goodbye(Goodbye { reason, message: String::new() })).await;
                        let _ = framed.get_mut().shutdown().await;
                        return format!("closed by the controller ({reason:?})");
                    }
                };
                if let Err(e) = res {
                    return e;
                }
                live.sent();
            }
            _ = tokio::time::sleep_until(live.deadline()) => {
                match live.due(tokio::time::Instant::now()) {
                    Due::Dead => return format!("agent silent for {:?}: declared dead", live.dead_after()),
                    Due::Heartbeat => {
                        if let Err(e) = framed.send(ControllerMsg::Heartbeat).await {
                            return e.to_string();
                        }
                        live.sent();
                    }
                    Due::Nothing => {}
                }
            }
        }
    }
}

/// Handles one agent message; returns the reply to send, if any, or the
/// reason to close.
fn handle(
    shared: &Shared,
    node: &str,
    hello: &Hello,
    msg: AgentMsg,
) -> Result<Option<ControllerMsg>, String> {
    match msg {
        AgentMsg::Heartbeat => {
            if let Some(e) = lock(&shared.nodes).get_mut(node) {
                e.info.heartbeats += 1;
            }
            shared.emit(ControllerEvent::Heartbeat { node: node.into() });
            Ok(None)
        }
        AgentMsg::Listen(frame) => {
            shared.emit(ControllerEvent::Listen {
                node: node.into(),
                frame,
                received_at_ms: now_ms(),
            });
            Ok(None)
        }
        AgentMsg::ClockProbe { sent_ms } => {
            let offset = shared
                .clock_offset_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let now = now_ms().saturating_add_signed(offset);
            Ok(Some(ControllerMsg::ClockReply(
                rakkr_protocol::ClockReply {
                    probe_sent_ms: sent_ms,
                    received_ms: now,
                    replied_ms: now,
                },
            )))
        }
        AgentMsg::Event(event) => {
            let accepted = lock(&shared.store)
                .accept(node, hello.resume.stream_id, &event)
                .map_err(|e| format!("cannot store event {}: {e}", event.seq))?;
            if let Accepted::AfterGap { missing } = accepted {
                tracing::warn!(%node, seq = event.seq, missing, "gap in the event stream");
            }
            let up_to = event.seq;
            if matches!(
                event.body,
                rakkr_protocol::EventBody::TakeStarted(_)
                    | rakkr_protocol::EventBody::SegmentClosed { .. }
                    | rakkr_protocol::EventBody::TakeStopped { .. }
                    | rakkr_protocol::EventBody::TakeRecovered { .. }
            ) && let Some((_, poke)) = lock(&shared.pull_pokes).get(node)
            {
                poke.notify_one();
            }
            shared.emit(ControllerEvent::Event {
                node: node.into(),
                event,
                duplicate: accepted == Accepted::Duplicate,
            });
            Ok(Some(ControllerMsg::Ack(Ack { up_to })))
        }
        AgentMsg::Result(result) => {
            let mut pending = lock(&shared.pending);
            // A refusal of a command whose id was over its limit carries the
            // id cut to the limit (PROTOCOL.md §8.1).
            let key = if pending.contains_key(&result.id)
                || result.id.len() < rakkr_protocol::limits::COMMAND_ID_MAX
            {
                Some(result.id.clone())
            } else {
                pending
                    .keys()
                    .find(|k| {
                        k.len() > rakkr_protocol::limits::COMMAND_ID_MAX
                            && k.starts_with(&result.id)
                    })
                    .cloned()
            };
            for waiter in key.and_then(|k| pending.remove(&k)).unwrap_or_default() {
                let _ = waiter.send(result.clone());
            }
            drop(pending);
            shared.emit(ControllerEvent::Result {
                node: node.into(),
                result,
            });
            Ok(None)
        }
        AgentMsg::Meter(frame) => {
            shared.emit(ControllerEvent::Meter {
                node: node.into(),
                frame,
            });
            Ok(None)
        }
        AgentMsg::Fetch(f) => fetch(shared, node, f),
        m @ (AgentMsg::FileChunk(_) | AgentMsg::FileReadFailed(_)) => {
            if let AgentMsg::FileChunk(c) = &m {
                shared
                    .take_bytes
                    .fetch_add(c.data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            // To this node's take puller; a full queue drops it (the
            // puller asks again after a stall).
            if let Some((_, tx)) = lock(&shared.file_replies).get(node) {
                let _ = tx.try_send(m);
            }
            Ok(None)
        }
        AgentMsg::Renew(r) => Ok(Some(renew(shared, node, &r))),
        AgentMsg::Enroll(_) => Err("protocol violation: Enroll on an authenticated session".into()),
        AgentMsg::Goodbye(g) => Err(format!("agent said goodbye ({:?}) {}", g.reason, g.message)),
        AgentMsg::Hello(_) => Err("protocol violation: second Hello".into()),
    }
}

/// SHA-256 (hex) of the first certificate in `pem`; empty if none parses.
fn leaf_sha256(pem: &str) -> String {
    use sha2::Digest;
    rakkr_protocol::tls::certs_from_pem(pem.as_bytes(), "issued")
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| hex::encode(sha2::Sha256::digest(c.as_ref())))
        .unwrap_or_default()
}

/// Answers a renewal request from the node certified as `node`.
fn renew(shared: &Shared, node: &str, r: &rakkr_protocol::message::Renew) -> ControllerMsg {
    let signer = lock(&shared.renewal).clone();
    let Some(renewal) = signer else {
        return ControllerMsg::RenewRefused {
            request_id: r.request_id,
            message: "this controller does not renew certificates".into(),
        };
    };
    let pem = match renewal.renew(node, &r.csr_der) {
        Ok(pem) => pem,
        Err(message) => {
            tracing::warn!(%node, %message, "renewal refused");
            return ControllerMsg::RenewRefused {
                request_id: r.request_id,
                message,
            };
        }
    };
    let sha256 = leaf_sha256(&pem);
    tracing::info!(%node, %sha256, "renewed a node certificate");
    shared.emit(ControllerEvent::CertificateIssued {
        node: node.into(),
        sha256,
    });
    ControllerMsg::Renewed {
        request_id: r.request_id,
        chain_pem: pem,
    }
}

/// An enrollment session (no client certificate): one Enroll with a
/// one-time token, answered with the node's first certificate or a refusal.
async fn enroll(shared: &Arc<Shared>, peer: SocketAddr, mut framed: ServerFramed) {
    let timeout = shared.config.handshake_timeout;
    let e = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok(AgentMsg::Enroll(e)))) => e,
        Ok(Some(Ok(other))) => {
            return fail(
                shared,
                peer,
                format!(
                    "client presented no certificate and sent {} instead of Enroll",
                    other.kind()
                ),
            );
        }
        _ => return fail(shared, peer, "client presented no certificate".into()),
    };
    let ours = lock(&shared.tokens).contains_key(&e.token);
    // NOTE: a token of ours is checked here; any other goes to the
    // configured check (awaited outside every lock), then is signed.
    if let (false, Some(check)) = (ours, shared.config.token_check.clone()) {
        let verdict = match check.check(&e.node_id, &e.token).await {
            Ok(()) => match lock(&shared.renewal).clone() {
                None => Err("this controller does not issue certificates".to_owned()),
                Some(s) => s.renew(&e.node_id, &e.csr_der),
            },
            Err(why) => Err(why),
        };
        return answer_enroll(shared, peer, &e.node_id, verdict, framed).await;
    }
    let verdict = {
        let mut tokens = lock(&shared.tokens);
        match tokens.get(&e.token).cloned() {
            None => Err("unknown or already used enrollment token".to_owned()),
            Some((_, until)) if until < std::time::SystemTime::now() => {
                tokens.remove(&e.token);
                Err("the enrollment token has expired".to_owned())
            }
            Some((node, _)) if node != e.node_id => Err(format!(
                "the enrollment token is for node {node:?}, not {:?}",
                e.node_id
            )),
            Some(_) => {
                // NOTE: one-time: spent before signing, whatever happens next.
                tokens.remove(&e.token);
                let signer = lock(&shared.renewal).clone();
                match signer {
                    None => Err("this controller does not issue certificates".to_owned()),
                    Some(s) => s.renew(&e.node_id, &e.csr_der),
                }
            }
        }
    };
    answer_enroll(shared, peer, &e.node_id, verdict, framed).await;
}

/// Sends the enrollment's answer and closes the session.
async fn answer_enroll(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    node: &str,
    verdict: Result<String, String>,
    mut framed: ServerFramed,
) {
    let reply = match verdict {
        Ok(chain_pem) => {
            let sha256 = leaf_sha256(&chain_pem);
            tracing::info!(%node, %peer, %sha256, "node enrolled");
            shared.emit(ControllerEvent::Enrolled {
                node: node.to_owned(),
                sha256,
            });
            ControllerMsg::Enrolled { chain_pem }
        }
        Err(reason) => {
            tracing::warn!(%node, %peer, %reason, "enrollment refused");
            shared.emit(ControllerEvent::EnrollRefused {
                peer,
                reason: reason.clone(),
            });
            ControllerMsg::EnrollRefused { message: reason }
        }
    };
    let _ = framed.send(reply).await;
    let _ = framed.close().await;
}

/// A node whose certificate expired within the grace: `RenewalOnly`
/// instead of Welcome, then only renewal requests are answered; the
/// session ends after the first certificate is issued (the node comes
/// back with it) or when the handshake timeout passes in silence.
async fn renewal_only(
    shared: &Arc<Shared>,
    node: &str,
    peer: SocketAddr,
    mut framed: ServerFramed,
) {
    tracing::info!(%node, %peer, "expired certificate within the renewal grace: renewal only");
    shared.emit(ControllerEvent::RenewalOnly { node: node.into() });
    let message =
        "your certificate has expired: renew it on this connection, then reconnect".to_owned();
    if framed
        .send(ControllerMsg::RenewalOnly { message })
        .await
        .is_err()
    {
        return;
    }
    let timeout = shared
        .config
        .handshake_timeout
        .max(std::time::Duration::from_secs(30));
    loop {
        let msg = match tokio::time::timeout(timeout, framed.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return,
        };
        match msg {
            AgentMsg::Heartbeat => {}
            AgentMsg::Renew(r) => {
                let reply = renew(shared, node, &r);
                let issued = matches!(reply, ControllerMsg::Renewed { .. });
                if framed.send(reply).await.is_err() || issued {
                    let _ = framed.close().await;
                    return;
                }
            }
            other => {
                let _ = framed
                    .send(ControllerMsg::Goodbye(Goodbye {
                        reason: GoodbyeReason::ProtocolError,
                        message: format!("renewal only: {} is not served", other.kind()),
                    }))
                    .await;
                return;
            }
        }
    }
}

/// Answers a [`Fetch`] from the published artifacts.
fn fetch(shared: &Shared, node: &str, f: Fetch) -> Result<Option<ControllerMsg>, String> {
    let failed = |message: String| {
        Ok(Some(ControllerMsg::TransferFailed {
            transfer_id: f.transfer_id.clone(),
            message,
        }))
    };
    let bytes = {
        let mut artifacts = lock(&shared.artifacts);
        let Some(a) = artifacts.get_mut(&f.transfer_id) else {
            return failed(format!(
                "no transfer {:?} on this controller",
                f.transfer_id
            ));
        };
        if a.cut_at.is_some_and(|cut| f.offset >= cut) {
            a.cut_at = None;
            return Err(format!("link cut at offset {} (fault injector)", f.offset));
        }
        a.bytes.clone()
    };
    let len = u64::from(f.len.min(MAX_CHUNK_LEN));
    let size = bytes.len() as u64;
    if f.offset > size {
        return failed(format!(
            "offset {} is past the end ({size} bytes)",
            f.offset
        ));
    }
    let end = (f.offset + len).min(size);
    let data = bytes[f.offset as usize..end as usize].to_vec();
    shared.emit(ControllerEvent::Fetched {
        node: node.into(),
        transfer_id: f.transfer_id.clone(),
        offset: f.offset,
        len: end - f.offset,
    });
    Ok(Some(ControllerMsg::Chunk(Chunk {
        transfer_id: f.transfer_id,
        offset: f.offset,
        data,
    })))
}
