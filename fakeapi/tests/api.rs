//! The fake controller over real HTTP, against the contract: auth and
//! scope, readiness, body checks, job leases, chunks and stops.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rakkr_fake_api::{FakeRakkr, JobStatus, Options};
use serde_json::{Value, json};

/// A fake on its own runtime (the tests' HTTP client blocks).
struct Fake {
    api: FakeRakkr,
    _rt: tokio::runtime::Runtime,
    http: ureq::Agent,
}

fn fake(opts: Options) -> Fake {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(FakeRakkr::start(opts)).unwrap();
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Fake { api, _rt: rt, http }
}

impl Fake {
    /// `method path` with `token`, `body` and extra headers: status, JSON.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.api.url());
        let auth = format!("Bearer {token}");
        let mut resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.http.get(&url).header("authorization", &auth);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call().unwrap()
            }
            (m, b) => {
                let mut r = match m {
                    "PUT" => self.http.put(&url),
                    _ => self.http.post(&url),
                }
                .header("authorization", &auth);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.send(b.unwrap_or_default()).unwrap()
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let b = body.to_string();
        self.call(
            "POST",
            path,
            token,
            Some(b.as_bytes()),
            &[("content-type", "application/json")],
        )
    }
}

fn heartbeat() -> Value {
    json!({"agentVersion": "1.0", "hostname": "foh", "ipAddresses": ["10.0.0.2"], "status": "idle"})
}

/// The controller's lease (30 s), a small cache limit, a fast sweep. Time
/// is never waited for: a test that needs a lease to have run out sets
/// its clock back (`lapse`), so a slow machine changes nothing.
fn quick() -> Options {
    Options {
        sweep: Duration::from_millis(50),
        cache_max_bytes: 1_000,
        ..Options::default()
    }
}

/// Job `id`'s lease (and the delivery time after a stop) ran out.
fn lapse(f: &Fake, id: &str) {
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    f.api.with(|s| {
        let j = s.job_mut(id).unwrap();
        j.lease_expires_at = j.lease_expires_at.map(|_| past);
        j.stop_requested_at = j.stop_requested_at.map(|_| past);
    });
}

/// Waits (bounded) until job `id` is `status`: the sweep got to it.
fn until(f: &Fake, id: &str, status: JobStatus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while f.api.with(|s| s.job(id).unwrap().status) != status {
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

mod auth {
    use super::*;

    #[test]
    fn a_token_is_one_nodes_and_a_down_database_looks_like_a_bad_one() {
        let f = fake(Options::default());
        let (a, b) = (f.api.enroll("node_a"), f.api.enroll("node_b"));
        let hb = "/api/v1/nodes/node_a/heartbeat";
        assert_eq!(f.post(hb, &a, heartbeat()).0, 202);
        assert_eq!(f.post(hb, "rakkr_node_nope", heartbeat()).0, 401);
        let (code, body) = f.post(hb, &b, heartbeat());
        assert_eq!(code, 403, "another node's token: {body}");
        f.api.set_ready(false);
        let (code, body) = f.post(hb, &a, heartbeat());
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("Invalid node credential"))
        );
        assert_eq!(f.call("GET", "/readyz", "", None, &[]).0, 503);
        f.api.set_ready(true);
        assert_eq!(f.call("GET", "/readyz", "", None, &[]).0, 200);
        assert_eq!(f.post(hb, &a, heartbeat()).0, 202);
    }

    #[test]
    fn bootstrap_revokes_every_earlier_token_and_is_single_use() {
        let f = fake(Options::default());
        let old = f.api.enroll("node_a");
        let bs = f.api.bootstrap_token("node_a");
        let path = "/api/v1/nodes/node_a/bootstrap";
        let key = json!({"publicKey": "ssh-ed25519 AAAA node", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n"});
        // A bad body is refused before the token is used.
        let (code, body) = f.post(path, &bs, json!({"publicKey": "k", "privateKey": "p"}));
        assert_eq!(code, 400, "{body}");
        assert_eq!(f.post(path, "", key.clone()).0, 401, "no token");
        let (code, body) = f.post(path, &bs, key.clone());
        assert_eq!(code, 201, "{body}");
        let new = body["data"]["controllerToken"].as_str().unwrap().to_owned();
        let hb = "/api/v1/nodes/node_a/heartbeat";
        assert_eq!(f.post(hb, &old, heartbeat()).0, 401, "revoked");
        assert_eq!(f.post(hb, &new, heartbeat()).0, 202);
        assert_eq!(f.post(path, &bs, key).0, 401, "used");
    }
}

mod bodies {
    use super::*;

    #[test]
    fn node_bodies_are_checked_as_the_controller_checks_them() {
        let f = fake(Options::default());
        let t = f.api.enroll("node_a");
        let hb = "/api/v1/nodes/node_a/heartbeat";
        assert_eq!(f.post(hb, &t, json!({"agentVersion": "1"})).0, 400);
        let many: Vec<String> = (0..17).map(|i| format!("10.0.0.{i}")).collect();
        let mut big = heartbeat();
        big["ipAddresses"] = json!(many);
        assert_eq!(f.post(hb, &t, big).0, 400);
        let mf = "/api/v1/nodes/node_a/meter-frame";
        let frame = |node: &str, label: Value| {
            json!({"nodeId": node, "interfaceId": "x32", "capturedAt": "2026-12-06T20:00:00Z",
                   "levels": [{"label": label, "peakDbfs": -6.0}]})
        };
        assert_eq!(f.post(mf, &t, frame("node_b", json!("Kick"))).0, 400);
        assert_eq!(f.post(mf, &t, frame("node_a", Value::Null)).0, 400);
        assert_eq!(f.post(mf, &t, frame("node_a", json!("Kick"))).0, 202);
        let he = "/api/v1/nodes/node_a/health-events";
        let ev = |ty: &str| json!({"type": ty, "severity": "warning", "details": {}});
        assert_eq!(f.post(he, &t, ev("controller.x")).0, 400);
        let mut extra = ev("agent.meter.clipping");
        extra["source"] = json!("me");
        assert_eq!(f.post(he, &t, extra).0, 400, "strict keys");
        assert_eq!(f.post(he, &t, ev("agent.meter.clipping")).0, 201);
        let inv = "/api/v1/nodes/node_a/inventory";
        let (code, body) = f.post(inv, &t, json!({"interfaces": [{"systemRef": "hw:X32"}]}));
        assert_eq!((code, &body["data"]["summary"]["added"]), (202, &json!(1)));
        f.api.with(|s| {
            let n = &s.nodes["node_a"];
            assert_eq!(
                (
                    n.heartbeats.len(),
                    n.meter_frames.len(),
                    n.health_events.len()
                ),
                (0, 1, 1)
            );
        });
    }

    #[test]
    fn a_listen_chunk_is_a_bounded_wav_with_its_time() {
        let f = fake(Options::default());
        let t = f.api.enroll("node_a");
        let path = "/api/v1/nodes/node_a/listen/chunk";
        let wav = vec![0u8; 44 + 32_000];
        let h = [
            ("content-type", "audio/wav"),
            ("x-rakkr-captured-at", "2026-12-06T20:00:00Z"),
            ("x-rakkr-duration-ms", "1000"),
        ];
        assert_eq!(f.call("POST", path, &t, Some(&wav), &h).0, 202);
        assert_eq!(
            f.call("POST", path, &t, Some(&wav[..40]), &h).0,
            400,
            "short"
        );
        let big = vec![0u8; (512 << 10) + 1];
        assert_eq!(f.call("POST", path, &t, Some(&big), &h).0, 400, "long");
        let slow = [h[0], h[1], ("x-rakkr-duration-ms", "20000")];
        assert_eq!(f.call("POST", path, &t, Some(&wav), &slow).0, 400);
    }
}

mod jobs {
    use super::*;

    #[test]
    fn a_claimed_job_keeps_its_lease_by_heartbeats_and_loses_it_without() {
        let f = fake(quick());
        let t = f.api.enroll("node_a");
        let next = "/api/v1/nodes/node_a/recording-jobs/next";
        assert_eq!(f.call("GET", next, &t, None, &[]).0, 204);
        let job = f.api.queue_job(
            "node_a",
            json!({"durationSeconds": 20, "type": "alsa_capture"}),
        );
        let (code, peek) = f.call("GET", next, &t, None, &[]);
        assert_eq!(
            (code, peek["data"]["status"].as_str()),
            (200, Some("queued"))
        );
        let (code, claimed) = f.post(
            "/api/v1/nodes/node_a/recording-jobs/claim-next",
            &t,
            json!({}),
        );
        assert_eq!(code, 200);
        assert_eq!(claimed["data"]["status"], "running");
        assert!(claimed["data"]["leaseExpiresAt"].is_string());
        let hb = format!("/api/v1/recording-jobs/{job}/heartbeat");
        let lease = || {
            f.api
                .with(|s| s.job(&job).unwrap().lease_expires_at.unwrap())
        };
        let before = lease();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(f.post(&hb, &t, json!({})).0, 200);
        assert!(lease() > before, "a heartbeat renews the lease");
        // Then none: the lease runs out and the sweep fails the job.
        lapse(&f, &job);
        until(&f, &job, JobStatus::Failed);
        let (code, body) = f.call(
            "GET",
            &format!("/api/v1/recording-jobs/{job}"),
            &t,
            None,
            &[],
        );
        assert_eq!(
            (code, body["data"]["failureReason"].as_str()),
            (200, Some("lease_expired"))
        );
        assert_eq!(f.post(&hb, &t, json!({})).0, 409);
        let rec = body["data"]["recordingId"].as_str().unwrap().to_owned();
        let put = format!("/api/v1/recordings/{rec}/cache-file");
        assert_eq!(
            f.call("PUT", &put, &t, Some(b"audio"), &[]).0,
            409,
            "too late"
        );
        let other = f.api.enroll("node_b");
        assert_eq!(f.post(&hb, &other, json!({})).0, 403);
    }

    #[test]
    fn a_capture_group_is_claimed_together() {
        let f = fake(Options::default());
        let t = f.api.enroll("node_a");
        let g = json!({"captureGroupId": "grp1", "type": "alsa_capture"});
        let (a, b) = (
            f.api.queue_job("node_a", g.clone()),
            f.api.queue_job("node_a", g),
        );
        let lone = f.api.queue_job("node_a", json!({"type": "alsa_capture"}));
        let path = "/api/v1/nodes/node_a/recording-jobs/claim-next-group";
        let (code, body) = f.post(path, &t, json!({}));
        assert_eq!(code, 200);
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [a.as_str(), b.as_str()]);
        let (_, body) = f.post(path, &t, json!({}));
        assert_eq!(body["data"][0]["id"], lone);
        assert_eq!(f.post(path, &t, json!({})).0, 204);
    }
}

mod chunks {
    use super::*;

    fn claimed(f: &Fake, t: &str) -> (String, String) {
        let job = f
            .api
            .queue_job("node_a", json!({"chunkSeconds": 5, "type": "alsa_capture"}));
        let (_, body) = f.post(
            "/api/v1/nodes/node_a/recording-jobs/claim-next",
            t,
            json!({}),
        );
        (
            job,
            body["data"]["recordingId"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn chunks_arrive_in_order_replace_by_index_and_the_last_completes() {
        let f = fake(quick());
        let t = f.api.enroll("node_a");
        let (job, rec) = claimed(&f, &t);
        let put = |q: &str, body: &[u8]| {
            f.call(
                "PUT",
                &format!("/api/v1/recordings/{rec}/cache-file{q}"),
                &t,
                Some(body),
                &[
                    ("content-type", "audio/flac"),
                    ("x-rakkr-file-name", "c.flac"),
                    ("x-rakkr-duration-seconds", "5"),
                ],
            )
        };
        assert_eq!(put("?chunk=0", b"zero").0, 201);
        assert_eq!(put("?chunk=1", b"one?").0, 201);
        assert_eq!(put("?chunk=1", b"one").0, 201, "sent again: replaced");
        assert_eq!(put("?chunkTotal=3", b"x").0, 400, "chunkTotal needs chunk");
        assert_eq!(put("?chunk=0", b"").0, 400, "empty");
        let (code, body) = put("?chunk=2&chunkTotal=3", b"two");
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["job"]["status"], "completed");
        assert_eq!(
            body["data"]["file"]["checksum"],
            format!(
                "sha256:{}",
                "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
            )
        );
        assert_eq!(
            put("?chunk=2&chunkTotal=3", b"two").0,
            201,
            "idempotent after completion"
        );
        f.api.with(|s| {
            let r = &s.recordings[&rec];
            let got: Vec<&[u8]> = r.chunks.values().map(|c| c.bytes.as_slice()).collect();
            assert_eq!(got, [&b"zero"[..], b"one", b"two"]);
            assert_eq!(
                (r.chunks[&1].puts, r.chunk_total, r.cached),
                (2, Some(3), true)
            );
            assert_eq!(s.job(&job).unwrap().status, JobStatus::Completed);
        });
        let big = vec![1u8; 1_001];
        assert_eq!(put("?chunk=3", &big).0, 413);
        let other = f.api.enroll("node_b");
        let theirs = f.call(
            "PUT",
            &format!("/api/v1/recordings/{rec}/cache-file"),
            &other,
            Some(b"x"),
            &[],
        );
        assert_eq!(theirs.0, 403);
    }

    #[test]
    fn a_stop_leaves_one_lease_to_deliver_then_cancels() {
        let f = fake(quick());
        let t = f.api.enroll("node_a");
        let (job, rec) = claimed(&f, &t);
        assert!(f.api.request_stop(&job));
        let (_, body) = f.call(
            "GET",
            &format!("/api/v1/recording-jobs/{job}"),
            &t,
            None,
            &[],
        );
        assert_eq!(body["data"]["status"], "stop_requested");
        assert!(body["data"]["stopRequestedAt"].is_string());
        assert_eq!(
            f.post(
                &format!("/api/v1/recording-jobs/{job}/heartbeat"),
                &t,
                json!({})
            )
            .0,
            409
        );
        // Delivered within the lease: the job completes with what there is.
        let last = f.call(
            "PUT",
            &format!("/api/v1/recordings/{rec}/cache-file?chunk=0&chunkTotal=1"),
            &t,
            Some(b"7 s"),
            &[],
        );
        assert_eq!(
            (last.0, last.1["job"]["status"].as_str()),
            (201, Some("completed"))
        );
        // Another, never delivered: cancelled once the lease from the stop runs out.
        let (job2, rec2) = claimed(&f, &t);
        assert!(f.api.request_stop(&job2));
        lapse(&f, &job2);
        until(&f, &job2, JobStatus::Cancelled);
        let late = f.call(
            "PUT",
            &format!("/api/v1/recordings/{rec2}/cache-file?chunk=0&chunkTotal=1"),
            &t,
            Some(b"x"),
            &[],
        );
        assert_eq!(late.0, 409);
    }
}
