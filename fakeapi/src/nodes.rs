//! Node routes: heartbeat, inventory, meter frames, config, health events,
//! bootstrap, and `/readyz`. Bodies are checked as the controller's zod
//! schemas check them (required keys, bounds); a bad one is 400 with
//! `issues`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::auth::{as_node, bearer, data, error};
use crate::{Shared, lock};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/api/v1/nodes/{node}/heartbeat", post(heartbeat))
        .route("/api/v1/nodes/{node}/inventory", post(inventory))
        .route("/api/v1/nodes/{node}/meter-frame", post(meter_frame))
        .route("/api/v1/nodes/{node}/config", get(config))
        .route("/api/v1/nodes/{node}/health-events", post(health_event))
        .route("/api/v1/nodes/{node}/bootstrap", post(bootstrap))
}

/// 400 naming what is wrong with a body.
fn invalid(what: &str, issue: &str) -> Response {
    let mut r = error(StatusCode::BAD_REQUEST, what);
    *r.body_mut() = axum::body::Body::from(
        json!({ "error": what, "issues": [{ "message": issue }] }).to_string(),
    );
    r
}

fn object(body: &Bytes) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

fn non_empty(o: &serde_json::Map<String, Value>, key: &str) -> bool {
    o.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

async fn readyz(St(s): St<Shared>) -> Response {
    if lock(&s).ready {
        data(StatusCode::OK, json!({ "status": "ready" }))
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

async fn heartbeat(
    St(s): St<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let Some(o) =
        object(&body).filter(|o| non_empty(o, "agentVersion") && non_empty(o, "hostname"))
    else {
        return invalid(
            "Invalid node heartbeat",
            "agentVersion and hostname are required",
        );
    };
    if o.get("ipAddresses")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 16)
    {
        return invalid("Invalid node heartbeat", "ipAddresses: at most 16");
    }
    let v = Value::Object(o);
    st.nodes
        .entry(node.clone())
        .or_default()
        .heartbeats
        .push(v.clone());
    data(StatusCode::ACCEPTED, json!({ "id": node, "heartbeat": v }))
}

async fn inventory(
    St(s): St<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let Some(list) = object(&body).and_then(|o| o.get("interfaces")?.as_array().cloned()) else {
        return invalid("Invalid node inventory", "interfaces is required");
    };
    if list.len() > 64 || !list.iter().all(Value::is_object) {
        return invalid("Invalid node inventory", "at most 64 interfaces");
    }
    let n = st.nodes.entry(node).or_default();
    let before = n.inventory.take().unwrap_or(json!({ "interfaces": [] }));
    let refs = |v: &Value| -> Vec<String> {
        v["interfaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["systemRef"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (refs(&before), refs(&json!({ "interfaces": list })));
    let summary = json!({
        "added": new.iter().filter(|r| !old.contains(r)).count(),
        "absent": old.iter().filter(|r| !new.contains(r)).count(),
        "unchanged": new.iter().filter(|r| old.contains(r)).count(),
    });
    n.inventory = Some(json!({ "interfaces": list }));
    data(StatusCode::ACCEPTED, json!({ "summary": summary }))
}

async fn meter_frame(
    St(s): St<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let Some(o) = object(&body) else {
        return invalid("Invalid meter frame", "a JSON object");
    };
    if o.get("nodeId").and_then(Value::as_str) != Some(node.as_str()) {
        return invalid("Invalid meter frame", "nodeId must be the path's node");
    }
    let ok_levels = o.get("levels").and_then(Value::as_array).is_some_and(|l| {
        l.len() <= 512
            && l.iter().all(|x| {
                x.get("label")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
    });
    if !ok_levels || !non_empty(&o, "interfaceId") || !non_empty(&o, "capturedAt") {
        return invalid(
            "Invalid meter frame",
            "interfaceId, capturedAt and at most 512 levels, each with a label",
        );
    }
    let lag = o
        .get("capturedAt")
        .and_then(Value::as_str)
        .and_then(crate::state::lag_ms);
    let n = st.nodes.entry(node).or_default();
    n.meter_lags_ms.extend(lag);
    n.meter_frames.push(Value::Object(o));
    data(StatusCode::ACCEPTED, json!({ "accepted": true }))
}

async fn config(St(s): St<Shared>, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    data(StatusCode::OK, st.nodes[&node].config.clone())
}

const EVENT_KEYS: [&str; 7] = [
    "id",
    "type",
    "severity",
    "details",
    "openedAt",
    "recordingId",
    "scheduleId",
];

async fn health_event(
    St(s): St<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let Some(o) = object(&body) else {
        return invalid("Invalid node health event", "a JSON object");
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let strict = o.keys().all(|k| EVENT_KEYS.contains(&k.as_str()));
    let severity = o.get("severity").and_then(Value::as_str);
    if !strict
        || ty.is_empty()
        || ty.len() > 160
        || !ty.starts_with("agent.")
        || !matches!(severity, Some("info" | "warning" | "critical"))
        || !o.get("details").is_some_and(Value::is_object)
    {
        return invalid(
            "Invalid node health event",
            "only id, type (agent.*, at most 160), severity (info|warning|critical), details, openedAt, recordingId, scheduleId",
        );
    }
    let id = st.id("hev");
    let mut event = Value::Object(o);
    event["eventId"] = id.into();
    let lag = event["openedAt"].as_str().and_then(crate::state::lag_ms);
    let n = st.nodes.entry(node).or_default();
    n.event_lags_ms.extend(lag);
    n.health_events.push(event.clone());
    data(StatusCode::CREATED, event)
}

/// Day-0: a single-use bootstrap token buys the node's controller token,
/// revoking every earlier one. As the controller checks it: a missing
/// token 401, then the body (the node's SSH private key, an OpenSSH
/// public key, an optional username) 400 without using the token, then
/// the token (unknown, used or another node's: 401), then the node (404).
async fn bootstrap(
    St(s): St<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    let Some(used) = bearer(&headers).map(str::to_owned) else {
        return error(StatusCode::UNAUTHORIZED, "Bootstrap token required");
    };
    let o = object(&body).unwrap_or_default();
    let public = o.get("publicKey").and_then(Value::as_str).unwrap_or("");
    let private = o.get("privateKey").and_then(Value::as_str).unwrap_or("");
    let username = o.get("username").and_then(Value::as_str);
    let openssh = ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-"]
        .iter()
        .any(|p| public.trim().starts_with(p));
    if private.is_empty()
        || private.len() > 20_000
        || !openssh
        || public.trim().len() > 4_000
        || username.is_some_and(|u| u.trim().is_empty() || u.trim().len() > 64)
    {
        return invalid(
            "Invalid bootstrap request",
            "privateKey (1-20000 chars), an OpenSSH publicKey and an optional username (1-64) are required",
        );
    }
    if st.bootstrap.get(&used) != Some(&node) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid or expired bootstrap token",
        );
    }
    st.bootstrap.remove(&used);
    let Some(n) = st.nodes.get_mut(&node) else {
        return error(StatusCode::NOT_FOUND, "Node not found");
    };
    let token = format!("rakkr_node_{}", crate::random_hex());
    n.tokens = vec![token.clone()];
    n.ssh_public_key = Some(public.trim().to_owned());
    data(
        StatusCode::CREATED,
        json!({ "nodeId": node, "controllerToken": token, "fingerprint": "SHA256:fake" }),
    )
}
