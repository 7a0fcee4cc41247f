//! Job routes: peek, claim (one, or a capture group), lease heartbeats,
//! read, and the terminal `failed` / `cancelled` (see `state.rs` for the
//! life of a job).

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::auth::{as_node, data, error, job_owner};
use crate::state::{JobStatus, State};
use crate::{Shared, lock};

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/nodes/{node}/recording-jobs/next", get(next))
        .route(
            "/api/v1/nodes/{node}/recording-jobs/claim-next",
            post(claim_next),
        )
        .route(
            "/api/v1/nodes/{node}/recording-jobs/claim-next-group",
            post(claim_group),
        )
        .route("/api/v1/recording-jobs/{job}", get(read))
        .route("/api/v1/recording-jobs/{job}/heartbeat", post(heartbeat))
        .route("/api/v1/recording-jobs/{job}/failed", post(failed))
        .route("/api/v1/recording-jobs/{job}/cancelled", post(cancelled))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The oldest queued job of `node`.
fn first_queued(st: &State, node: &str) -> Option<usize> {
    st.jobs
        .iter()
        .position(|j| j.node_id == node && j.status == JobStatus::Queued)
}

fn claim(st: &mut State, at: usize, now: SystemTime) {
    let lease = st.lease;
    let j = &mut st.jobs[at];
    j.status = JobStatus::Running;
    j.lease_expires_at = Some(now + lease);
}

async fn next(St(s): St<Shared>, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    st.expire(SystemTime::now());
    match first_queued(&st, &node) {
        Some(i) => data(StatusCode::OK, st.job_json(&st.jobs[i])),
        None => no_content(),
    }
}

async fn claim_next(St(s): St<Shared>, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let now = SystemTime::now();
    st.expire(now);
    let Some(i) = first_queued(&st, &node) else {
        return no_content();
    };
    claim(&mut st, i, now);
    data(StatusCode::OK, st.job_json(&st.jobs[i]))
}

/// The oldest queued job and every queued job sharing its capture group.
async fn claim_group(St(s): St<Shared>, Path(node): Path<String>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node) {
        return r.into_response();
    }
    let now = SystemTime::now();
    st.expire(now);
    let Some(first) = first_queued(&st, &node) else {
        return no_content();
    };
    let group = st.jobs[first].command["captureGroupId"]
        .as_str()
        .map(str::to_owned);
    let members: Vec<usize> = match group {
        None => vec![first],
        Some(g) => (0..st.jobs.len())
            .filter(|&i| {
                let j = &st.jobs[i];
                j.node_id == node
                    && j.status == JobStatus::Queued
                    && j.command["captureGroupId"].as_str() == Some(g.as_str())
            })
            .collect(),
    };
    for &i in &members {
        claim(&mut st, i, now);
    }
    let list: Vec<Value> = members.iter().map(|&i| st.job_json(&st.jobs[i])).collect();
    data(StatusCode::OK, Value::Array(list))
}

async fn read(St(s): St<Shared>, Path(job): Path<String>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if let Err(r) = job_owner(&st, &headers, &job) {
        return r.into_response();
    }
    st.expire(SystemTime::now());
    let j = st.job(&job).expect("checked by job_owner");
    data(StatusCode::OK, st.job_json(j))
}

/// Renews the lease of a running job; anything else (expired, stop
/// requested, ended) is 409.
async fn heartbeat(St(s): St<Shared>, Path(job): Path<String>, headers: HeaderMap) -> Response {
    let mut st = lock(&s);
    if let Err(r) = job_owner(&st, &headers, &job) {
        return r.into_response();
    }
    let now = SystemTime::now();
    st.expire(now);
    let lease = st.lease;
    let j = st.job_mut(&job).expect("checked by job_owner");
    if j.status != JobStatus::Running {
        return error(StatusCode::CONFLICT, "Recording job is not heartbeatable");
    }
    j.lease_expires_at = Some(now + lease);
    j.heartbeats += 1;
    let j = st.job(&job).expect("there");
    data(StatusCode::OK, st.job_json(j))
}

fn end(s: &Shared, job: &str, headers: &HeaderMap, to: JobStatus) -> Response {
    let mut st = lock(s);
    if let Err(r) = job_owner(&st, headers, job) {
        return r.into_response();
    }
    st.expire(SystemTime::now());
    let reason = headers
        .get("x-rakkr-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let j = st.job_mut(job).expect("checked by job_owner");
    if matches!(
        j.status,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    ) {
        return error(StatusCode::CONFLICT, "Recording job already ended");
    }
    j.status = to;
    j.failure_reason = reason;
    let j = st.job(job).expect("there");
    data(StatusCode::OK, st.job_json(j))
}

async fn failed(St(s): St<Shared>, Path(job): Path<String>, headers: HeaderMap) -> Response {
    end(&s, &job, &headers, JobStatus::Failed)
}

async fn cancelled(St(s): St<Shared>, Path(job): Path<String>, headers: HeaderMap) -> Response {
    end(&s, &job, &headers, JobStatus::Cancelled)
}
