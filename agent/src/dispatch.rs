//! Controller commands, from the link to what carries them out: limits
//! first, one at a time, each id at most once (the command log), then the
//! action — inventory, a note, a take command for the engine, an update, a
//! trust change — and the reply made to fit the wire.
//!
//! Runs on the daemon's runtime, off the link loop (the link spawns each
//! command); file work goes to the blocking pool.

use std::sync::Arc;

use rakkr_protocol::{
    Command, CommandBody, CommandResult, EventBody, FailureCode, Origin, Outcome, Reply,
};

use crate::command_log::failed;
use crate::node::{MAX_NOTE_LEN, Node, lock};

/// Runs a command at most once per id. A command with a field over its
/// limit is refused before anything else (and not remembered: the
/// reply carries its id cut to the limit).
pub async fn execute(node: &Arc<Node>, cmd: Command) -> CommandResult {
    if let Err(e) = cmd.check_limits() {
        let id = rakkr_protocol::limits::truncated(&cmd.id, rakkr_protocol::limits::COMMAND_ID_MAX);
        tracing::warn!(id = %id, error = %e, "command refused: over a limit");
        return failed(id, FailureCode::InvalidArgument, e.to_string());
    }
    let _one_at_a_time = node.serial.lock().await;
    if let Some(first) = lock(&node.commands).get(&cmd.id).cloned() {
        tracing::info!(id = %cmd.id, "repeated command id: returning the first result");
        return first;
    }
    let result = crate::fit::reply(act(node, &cmd).await);
    let me = node.clone();
    let to_store = result.clone();
    match tokio::task::spawn_blocking(move || lock(&me.commands).record(to_store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(id = %cmd.id, error = format!("{e:#}"), "could not record command result")
        }
        Err(e) => tracing::error!(id = %cmd.id, error = %e, "could not record command result"),
    }
    result
}

async fn update(
    node: &Arc<Node>,
    id: &str,
    offer: &rakkr_protocol::UpdateOffer,
    signed: Option<crate::jobs::update::Signed<'_>>,
) -> CommandResult {
    match crate::jobs::update::accept(node, offer, signed).await {
        Ok(ack) => {
            tracing::info!(%id, version = %offer.version, signed = signed.is_some(), ?ack, "update accepted");
            CommandResult {
                id: id.to_owned(),
                outcome: Outcome::Done(Reply::Update(ack)),
            }
        }
        Err((code, message)) => {
            tracing::warn!(%id, version = %offer.version, %message, "update refused");
            failed(id, code, message)
        }
    }
}

async fn act(node: &Arc<Node>, cmd: &Command) -> CommandResult {
    let done = |reply| CommandResult {
        id: cmd.id.clone(),
        outcome: Outcome::Done(reply),
    };
    match &cmd.body {
        CommandBody::Inventory => match node.inventory_json().await {
            Ok(json) => done(Reply::Inventory { json }),
            Err(e) => failed(&cmd.id, FailureCode::Internal, format!("{e:#}")),
        },
        CommandBody::Annotate { text } => {
            if text.trim().is_empty() || text.len() > MAX_NOTE_LEN {
                return failed(
                    &cmd.id,
                    FailureCode::InvalidArgument,
                    format!("note must be 1..={MAX_NOTE_LEN} bytes"),
                );
            }
            tracing::info!(id = %cmd.id, note = %text, "operator note from the controller");
            let origin = Origin::Controller {
                command_id: cmd.id.clone(),
            };
            match node
                .emit(EventBody::Annotated {
                    text: text.clone(),
                    origin,
                })
                .await
            {
                Ok(ev) => done(Reply::Annotated { seq: ev.seq }),
                Err(e) => failed(&cmd.id, FailureCode::Internal, format!("{e:#}")),
            }
        }
        CommandBody::Update(offer) => update(node, &cmd.id, offer, None).await,
        CommandBody::UpdateSigned(s) => {
            let signed = crate::jobs::update::Signed {
                manifest: &s.release_manifest,
                signature: &s.signature,
            };
            update(node, &cmd.id, &s.offer, Some(signed)).await
        }
        CommandBody::RotateTrust => {
            tracing::info!(id = %cmd.id, "the controller asks for a certificate renewal");
            node.trust.rotate.notify_one();
            done(Reply::RenewalStarted)
        }
        CommandBody::TrustBundle { cas_pem } => {
            let me = node.clone();
            let cas_pem = cas_pem.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let endpoint = me
                    .config
                    .controller
                    .endpoint
                    .as_ref()
                    .ok_or("no controller configured")?;
                let name = rakkr_protocol::tls::server_name(&endpoint.server_name)
                    .map_err(|e| e.to_string())?;
                crate::trust::bundle::apply(
                    &me.config.trust,
                    &cas_pem,
                    &me.trust.controller_chain(),
                    &name,
                )
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match applied {
                Ok(ca_sha256) => {
                    tracing::info!(id = %cmd.id, cas = ?ca_sha256, "new CA bundle installed");
                    if let Err(e) = node
                        .emit(EventBody::TrustBundleChanged {
                            ca_sha256: ca_sha256.clone(),
                        })
                        .await
                    {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "could not record the bundle change"
                        );
                    }
                    done(Reply::TrustBundle { ca_sha256 })
                }
                Err(message) => {
                    tracing::warn!(id = %cmd.id, %message, "CA bundle refused");
                    failed(&cmd.id, FailureCode::InvalidArgument, message)
                }
            }
        }
        CommandBody::ListTakes { .. }
        | CommandBody::TakeFiles { .. }
        | CommandBody::Receipt { .. } => match crate::jobs::takes::act(node, &cmd.body).await {
            Ok(reply) => done(reply),
            Err((code, message)) => {
                tracing::warn!(id = %cmd.id, %message, "take transfer command refused");
                failed(&cmd.id, code, message)
            }
        },
        CommandBody::Configure(push) => match crate::jobs::configure::apply(node, push).await {
            Ok(applied) => done(Reply::Configured(applied)),
            Err((code, message)) => {
                tracing::warn!(id = %cmd.id, version = push.version, %message, "pushed configuration refused");
                failed(&cmd.id, code, message)
            }
        },
        CommandBody::StartTake(_)
        | CommandBody::StartTakeWith(_)
        | CommandBody::RunningTakes
        | CommandBody::StopTake { .. }
        | CommandBody::Mark { .. }
        | CommandBody::TakeStatus
        | CommandBody::Listen(_)
        | CommandBody::StopListen => match node.recorder.get() {
            None => failed(
                &cmd.id,
                FailureCode::Busy,
                "the recorder is not running yet",
            ),
            Some(rec) => match take_command(rec, &cmd.body).await {
                Ok(reply) => {
                    tracing::info!(id = %cmd.id, "take command done");
                    done(reply)
                }
                Err(r) => {
                    tracing::warn!(id = %cmd.id, error = %r, "take command refused");
                    failed(&cmd.id, r.code, r.message)
                }
            },
        },
    }
}

/// Runs a take command on the recorder.
async fn take_command(
    rec: &crate::engine::Handle,
    body: &CommandBody,
) -> Result<Reply, crate::engine::Refusal> {
    use std::time::Duration;
    Ok(match body {
        CommandBody::StartTake(st) => {
            let (take, already_running) = rec
                .start(crate::engine::StartRequest {
                    channels: (st.channels > 0).then_some(st.channels),
                    container: st.format.map(crate::engine::container),
                    segment: seconds(st.segment_seconds),
                    pre_roll: Duration::from_millis(u64::from(st.pre_roll_ms)),
                    exclusive: true,
                    ..crate::engine::StartRequest::named(&st.take_id)
                })
                .await?;
            Reply::Take {
                take,
                already_running,
            }
        }
        CommandBody::StartTakeWith(t) => {
            let (take, already_running) = rec
                .start(crate::engine::StartRequest {
                    channel_list: Some(t.channels.clone()),
                    start_at_ms: t.start_at_ms,
                    end_at_ms: t.end_at_ms,
                    job_id: t.job_id.clone(),
                    container: t.format.map(crate::engine::container),
                    segment: seconds(t.segment_seconds),
                    pre_roll: Duration::from_millis(u64::from(t.pre_roll_ms)),
                    duration: (t.duration_ms > 0).then(|| Duration::from_millis(t.duration_ms)),
                    ..crate::engine::StartRequest::named(&t.take_id)
                })
                .await?;
            Reply::Take {
                take,
                already_running,
            }
        }
        CommandBody::RunningTakes => {
            let st = rec.status().await?;
            Reply::Running {
                device: st.device_or_error(),
                device_ok: st.device_ok,
                takes: st.takes,
            }
        }
        CommandBody::Listen(req) => Reply::Listening(rec.listen(req.clone()).await?),
        CommandBody::StopListen => Reply::ListenStopped {
            was_running: rec.stop_listen("the controller asked").await?,
        },
        CommandBody::StopTake { take_id } => {
            let ending = crate::take::writer::Ending::asked("controller");
            let (take, manifest) = rec.stop(take_id.clone(), ending).await?;
            Reply::TakeStopped {
                take,
                manifest_json: crate::engine::events::manifest_json(&manifest),
            }
        }
        CommandBody::Mark { label } => Reply::Marked {
            at_sample: rec.mark(label.clone()).await?,
        },
        _ => {
            let st = rec.status().await?;
            Reply::TakeStatus {
                device: st.device_or_error(),
                device_ok: st.device_ok,
                take: st.take,
            }
        }
    })
}

/// Whole seconds from the wire (0: the node's setting).
fn seconds(s: u32) -> Option<std::time::Duration> {
    (s > 0).then(|| std::time::Duration::from_secs(u64::from(s)))
}
