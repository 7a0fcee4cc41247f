//! Audio arriving: `PUT /recordings/{rec}/cache-file` (a whole file or a
//! chunk of a chunked job) and the live listen chunk.
//!
//! Cache-file rules, as the controller applies them: a Content-Length over
//! the limit is 413 before the body is read; an empty body 400; another
//! node's recording 403; a job that failed or was cancelled (its lease ran
//! out) 409, a completed one is taken again (a duplicate upload stays
//! idempotent). `chunk` is 0-based; re-sending an index replaces it;
//! `chunkTotal` (on the last chunk only) or an unchunked primary file
//! completes the job. `rendition=raw` is a supplementary copy and
//! completes nothing. The controller hashes the body itself.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State as St};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::{as_node, data, error, node};
use crate::state::{JobStatus, Stored};
use crate::{Shared, lock};

/// Largest listen chunk.
const LISTEN_MAX: usize = 512 << 10;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/recordings/{rec}/cache-file", put(cache_file))
        .route("/api/v1/nodes/{node}/listen/chunk", post(listen_chunk))
        // NOTE: the limit is ours to check (413 from Content-Length).
        .layer(DefaultBodyLimit::disable())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn cache_file(
    St(s): St<Shared>,
    Path(rec): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    let who = match node(&st, &headers) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let declared = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.unwrap_or(body.len() as u64) > st.cache_max_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Recording cache file is too large",
        );
    }
    let Some(r) = st.recordings.get(&rec) else {
        return error(StatusCode::NOT_FOUND, "Recording not found");
    };
    if r.node_id != who {
        return error(
            StatusCode::FORBIDDEN,
            "Node credential cannot access this recording",
        );
    }
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Recording cache file is empty");
    }
    let num = |k: &str| q.get(k).map(|v| v.parse::<u32>());
    let (chunk, total) = match (num("chunk"), num("chunkTotal")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) | (None, Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "chunk and chunkTotal are integers; chunkTotal needs chunk",
            );
        }
        (c, t) => (
            c.map(Result::unwrap_or_default),
            t.map(Result::unwrap_or_default),
        ),
    };
    if total.is_some_and(|t| t == 0 || chunk.is_some_and(|c| c >= t)) {
        return error(
            StatusCode::BAD_REQUEST,
            "chunkTotal must be above the chunk index",
        );
    }
    st.expire(SystemTime::now());
    let job = st.jobs.iter().position(|j| j.recording_id == rec);
    if chunk.is_some() && job.is_none() {
        return error(
            StatusCode::CONFLICT,
            "Chunk upload requires an owning recording job",
        );
    }
    if let Some(i) = job
        && matches!(st.jobs[i].status, JobStatus::Failed | JobStatus::Cancelled)
    {
        return error(
            StatusCode::CONFLICT,
            "Recording job is in a terminal state and cannot be completed",
        );
    }
    let raw = q.get("rendition").is_some_and(|r| r == "raw");
    let stored = Stored {
        content_type: header(&headers, "content-type")
            .unwrap_or_default()
            .to_owned(),
        file_name: header(&headers, "x-rakkr-file-name")
            .unwrap_or_default()
            .to_owned(),
        duration_seconds: header(&headers, "x-rakkr-duration-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        puts: 1,
        bytes: body.to_vec(),
    };
    let checksum = format!("sha256:{}", hex::encode(Sha256::digest(&stored.bytes)));
    let (size, file_name, mime) = (
        stored.bytes.len(),
        stored.file_name.clone(),
        stored.content_type.clone(),
    );
    let r = st.recordings.get_mut(&rec).expect("found above");
    let slot = if raw { &mut r.raw } else { &mut r.chunks };
    let index = chunk.unwrap_or(0);
    let puts = slot.get(&index).map_or(0, |o| o.puts);
    slot.insert(
        index,
        Stored {
            puts: puts + 1,
            ..stored
        },
    );
    let completes = !raw && (chunk.is_none() || total.is_some());
    if completes {
        r.cached = true;
        r.chunk_total = total.or(r.chunk_total);
    }
    if let (true, Some(i)) = (completes, job) {
        st.jobs[i].status = JobStatus::Completed;
    }
    let job_json = job.map(|i| st.job_json(&st.jobs[i]));
    let mut reply = json!({
        "data": {
            "file": {"checksum": checksum, "fileName": file_name, "mimeType": mime, "size": size},
            "recording": {"id": rec, "status": if completes { "cached" } else { "recording" }},
            "uploadQueueItems": [],
        },
    });
    if let Some(j) = job_json {
        reply["job"] = j;
    }
    (StatusCode::CREATED, axum::Json(reply)).into_response()
}

async fn listen_chunk(
    St(s): St<Shared>,
    Path(node_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&s);
    if let Err(r) = as_node(&st, &headers, &node_id) {
        return r.into_response();
    }
    let ms = header(&headers, "x-rakkr-duration-ms").and_then(|v| v.parse::<u64>().ok());
    let at = header(&headers, "x-rakkr-captured-at").map(str::to_owned);
    let wav = header(&headers, "content-type") == Some("audio/wav");
    match (ms, at) {
        (Some(ms @ 1..=10_000), Some(at)) if wav && (44..=LISTEN_MAX).contains(&body.len()) => {
            st.nodes.entry(node_id).or_default().listen = Some((at, ms, body.to_vec()));
            data(StatusCode::ACCEPTED, json!({ "accepted": true }))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "Invalid listen chunk: audio/wav of 44 B to 512 KiB, x-rakkr-captured-at, x-rakkr-duration-ms 1-10000",
        ),
    }
}
