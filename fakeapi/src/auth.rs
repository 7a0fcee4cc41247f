//! Who is asking: the bearer token's node, or the controller's answer for
//! a request it refuses.
//!
//! NOTE: while the database is down the real controller cannot look a
//! token up and answers 401 "Invalid node credential" — not 503; only
//! `/readyz` says it is not ready. A client must check readiness before
//! taking a 401 for a revoked token.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::State;

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) fn data(status: StatusCode, value: serde_json::Value) -> Response {
    (status, Json(json!({ "data": value }))).into_response()
}

/// A refusal of the auth checks (a small `Err`; the handler turns it into
/// the reply).
#[derive(Debug)]
pub(crate) struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The node the request's token authenticates as.
pub(crate) fn node(st: &State, headers: &HeaderMap) -> Result<String, Refused> {
    let invalid = || {
        st.unauthorized
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Refused(StatusCode::UNAUTHORIZED, "Invalid node credential")
    };
    if !st.ready {
        return Err(invalid());
    }
    bearer(headers)
        .and_then(|t| st.node_of(t))
        .ok_or_else(invalid)
}

/// The same, and it must be `node_id`.
pub(crate) fn as_node(st: &State, headers: &HeaderMap, node_id: &str) -> Result<(), Refused> {
    if node(st, headers)? != node_id {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "Node credential cannot access this node",
        ));
    }
    Ok(())
}

/// The request's node must own job `job_id`.
pub(crate) fn job_owner(st: &State, headers: &HeaderMap, job_id: &str) -> Result<(), Refused> {
    let who = node(st, headers)?;
    match st.job(job_id) {
        None => Err(Refused(StatusCode::NOT_FOUND, "Recording job not found")),
        Some(j) if j.node_id != who => Err(Refused(
            StatusCode::FORBIDDEN,
            "Node credential cannot access this job",
        )),
        Some(_) => Ok(()),
    }
}
