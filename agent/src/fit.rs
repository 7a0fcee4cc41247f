//! Keeps everything the agent queues or sends within the link's limits
//! (see `rakkr_protocol::limits`): an event or reply that could not be sent
//! would block the event stream for good (it is resent after every
//! reconnect), so it is made to fit before it is queued.
//!
//! - A take manifest over `MANIFEST_INLINE_MAX` leaves its event (and the
//!   `StopTake` reply) empty and travels in `ManifestPart` events queued
//!   just before it.
//! - Anything else over the limit is replaced by a small stand-in
//!   (`EventDropped`, or a `Failed` reply) that says what and why.

use rakkr_protocol::limits::{EVENT_MAX, MANIFEST_INLINE_MAX};
use rakkr_protocol::{CommandResult, EventBody, Failure, FailureCode, Outcome, Reply};

/// Bytes of JSON per `ManifestPart` (its event stays well under `EVENT_MAX`).
const PART: usize = MANIFEST_INLINE_MAX;

/// The events to queue for `body`, each within the limit.
pub fn event(mut body: EventBody) -> Vec<EventBody> {
    let mut out = Vec::new();
    if let EventBody::TakeStopped {
        take_id,
        manifest_json,
        ..
    }
    | EventBody::TakeRecovered {
        take_id,
        manifest_json,
        ..
    } = &mut body
    {
        *manifest_json = split_manifest(take_id, std::mem::take(manifest_json), &mut out);
    }
    out.push(within_limit(body));
    out
}

/// Moves a manifest over the inline limit into parts; returns what stays
/// inline (the manifest, or nothing).
fn split_manifest(take_id: &str, json: String, parts: &mut Vec<EventBody>) -> String {
    if json.len() <= MANIFEST_INLINE_MAX {
        return json;
    }
    let pieces = chunks(&json, PART);
    let n = pieces.len() as u32;
    for (i, p) in pieces.into_iter().enumerate() {
        parts.push(EventBody::ManifestPart {
            take_id: rakkr_protocol::limits::truncated(take_id, 128).to_owned(),
            part: i as u32,
            parts: n,
            json: p.to_owned(),
        });
    }
    tracing::info!(take = %take_id, bytes = json.len(), parts = n, "the manifest goes in parts");
    String::new()
}

/// `s` in pieces of at most `max` bytes, cut on character boundaries.
fn chunks(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let head = rakkr_protocol::limits::truncated(rest, max);
        out.push(head);
        rest = &rest[head.len()..];
    }
    out
}

/// Encoded size of an event carrying `body`.
fn encoded_len(body: &EventBody) -> usize {
    let ev = rakkr_protocol::Event {
        seq: u64::MAX,
        at_ms: u64::MAX,
        body: body.clone(),
    };
    postcard::to_allocvec(&rakkr_protocol::AgentMsg::Event(ev)).map_or(usize::MAX, |v| v.len())
}

/// `body`, or a stand-in when the controller's protocol `version` has no
/// such event (it could not decode it: the stream would stop there).
pub fn for_version(body: EventBody, version: u16) -> EventBody {
    let (needs, what) = match body {
        EventBody::Health(_) => (
            rakkr_protocol::version::HEALTH,
            "Health events; the node's status shows its health",
        ),
        EventBody::Console(_) => (
            rakkr_protocol::version::CONSOLE,
            "Console events; `rakkr-recorder-agent console` on the node shows its console",
        ),
        _ => return body,
    };
    if version >= needs {
        return body;
    }
    let len = encoded_len(&body) as u64;
    EventBody::EventDropped {
        kind: kind(&body).to_owned(),
        bytes: len,
        reason: format!("the controller speaks protocol {version}, which has no {what}"),
    }
}

/// `body`, or a stand-in when it is over the limit.
pub fn within_limit(body: EventBody) -> EventBody {
    let len = encoded_len(&body);
    if len <= EVENT_MAX {
        return body;
    }
    let kind = kind(&body);
    tracing::error!(
        kind,
        bytes = len,
        max = EVENT_MAX,
        "an event over the size limit was replaced by EventDropped"
    );
    EventBody::EventDropped {
        kind: kind.to_owned(),
        bytes: len as u64,
        reason: format!(
            "a {kind} event of {len} bytes is over the {EVENT_MAX}-byte limit and cannot be sent; what it said is in the agent's log and, for a take, in its manifest.json on the node"
        ),
    }
}

/// The variant name of an event (for stand-ins and logs).
pub fn kind(body: &EventBody) -> &'static str {
    match body {
        EventBody::AgentStarted { .. } => "AgentStarted",
        EventBody::Annotated { .. } => "Annotated",
        EventBody::OutboxOverflow { .. } => "OutboxOverflow",
        EventBody::AgentStopping { .. } => "AgentStopping",
        EventBody::TakeStarted(_) => "TakeStarted",
        EventBody::SegmentClosed { .. } => "SegmentClosed",
        EventBody::TakeStopped { .. } => "TakeStopped",
        EventBody::Xrun { .. } => "Xrun",
        EventBody::DiskLow { .. } => "DiskLow",
        EventBody::DeviceLost { .. } => "DeviceLost",
        EventBody::DeviceBack { .. } => "DeviceBack",
        EventBody::TakeRecovered { .. } => "TakeRecovered",
        EventBody::UpdateDeferred { .. } => "UpdateDeferred",
        EventBody::UpdateInstalled { .. } => "UpdateInstalled",
        EventBody::UpdateCommitted { .. } => "UpdateCommitted",
        EventBody::UpdateRolledBack { .. } => "UpdateRolledBack",
        EventBody::UpdateFailed { .. } => "UpdateFailed",
        EventBody::TrustRenewed { .. } => "TrustRenewed",
        EventBody::TrustRenewFailed { .. } => "TrustRenewFailed",
        EventBody::TrustBundleChanged { .. } => "TrustBundleChanged",
        EventBody::ManifestPart { .. } => "ManifestPart",
        EventBody::EventDropped { .. } => "EventDropped",
        EventBody::FilesReceived { .. } => "FilesReceived",
        EventBody::ReceiptRefused { .. } => "ReceiptRefused",
        EventBody::TakeDeleted { .. } => "TakeDeleted",
        EventBody::RetentionBlocked { .. } => "RetentionBlocked",
        EventBody::Health(_) => "Health",
        EventBody::Console(_) => "Console",
    }
}

/// A command result that fits in a frame: a `StopTake` reply drops a
/// manifest over the inline limit (its `ManifestPart` events carry it);
/// anything else too large becomes a `Failed` reply saying so.
pub fn reply(mut r: CommandResult) -> CommandResult {
    if let Outcome::Done(Reply::TakeStopped { manifest_json, .. }) = &mut r.outcome
        && manifest_json.len() > MANIFEST_INLINE_MAX
    {
        manifest_json.clear();
    }
    let len = postcard::to_allocvec(&rakkr_protocol::AgentMsg::Result(r.clone()))
        .map_or(usize::MAX, |v| v.len());
    if len > EVENT_MAX {
        r.outcome = Outcome::Failed(Failure {
            code: FailureCode::Internal,
            message: format!(
                "the reply is {len} bytes, over the {EVENT_MAX}-byte limit; the command ran, see the agent's log"
            ),
        });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_manifest_travels_in_parts_that_rebuild_it() {
        let manifest = format!("{{\"files\":\"{}\"}}", "é".repeat(400_000));
        let evs = event(EventBody::TakeStopped {
            take_id: "t".into(),
            status: "complete".into(),
            reason: String::new(),
            frames: 1,
            manifest_json: manifest.clone(),
        });
        let (last, parts) = evs.split_last().unwrap();
        assert!(
            matches!(last, EventBody::TakeStopped { manifest_json, .. } if manifest_json.is_empty())
        );
        let mut joined = String::new();
        for (i, p) in parts.iter().enumerate() {
            let EventBody::ManifestPart {
                part,
                parts: n,
                json,
                ..
            } = p
            else {
                panic!("{p:?}");
            };
            assert_eq!((*part as usize, *n as usize), (i, parts.len()));
            assert!(encoded_len(p) <= EVENT_MAX);
            joined.push_str(json);
        }
        assert_eq!(joined, manifest);
    }

    #[test]
    fn an_oversized_event_is_replaced_by_a_small_one_naming_it() {
        let e = within_limit(EventBody::AgentStopping {
            reason: "x".repeat(EVENT_MAX + 1),
        });
        let EventBody::EventDropped { kind, bytes, .. } = e else {
            panic!("{e:?}");
        };
        assert_eq!(kind, "AgentStopping");
        assert!(bytes as usize > EVENT_MAX);
        let small = EventBody::AgentStopping {
            reason: "ok".into(),
        };
        assert_eq!(within_limit(small.clone()), small);
    }
}
