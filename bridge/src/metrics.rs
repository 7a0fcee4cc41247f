//! What the bridge counts, and its HTTP side for operators: `/healthz`
//! (200 while it runs, with the nodes linked) and `/metrics` (Prometheus
//! text, OpenMetrics encoding).
//!
//! Counters are bumped by the forwarder and the token check; the gauge of
//! linked nodes follows link and unlink.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Every figure the bridge exports.
#[derive(Debug)]
pub struct Metrics {
    pub nodes_linked: Gauge,
    pub heartbeats: Family<Outcome, Counter>,
    pub meter_frames: Family<Outcome, Counter>,
    pub health_events: Family<Outcome, Counter>,
    pub config_pushes: Family<Outcome, Counter>,
    pub enrollments: Family<Outcome, Counter>,
    pub listen_chunks: Family<Outcome, Counter>,
    pub jobs_running: Gauge,
    pub lease_renewals: Family<Outcome, Counter>,
    pub uploads: Family<Outcome, Counter>,
    pub bytes_delivered: Counter,
    /// Seconds from a chunk found ready to the controller's 201 (render
    /// and upload): the delivery lag.
    pub delivery_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            nodes_linked: Gauge::default(),
            heartbeats: Family::default(),
            meter_frames: Family::default(),
            health_events: Family::default(),
            config_pushes: Family::default(),
            enrollments: Family::default(),
            listen_chunks: Family::default(),
            jobs_running: Gauge::default(),
            lease_renewals: Family::default(),
            uploads: Family::default(),
            bytes_delivered: Counter::default(),
            delivery_seconds: Histogram::new([
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        }
    }
}

impl Metrics {
    pub fn ok(f: &Family<Outcome, Counter>, ok: bool) {
        f.get_or_create(&Outcome {
            outcome: if ok { "ok" } else { "failed" },
        })
        .inc();
    }

    fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("rakkr_bridge");
        r.register(
            "nodes_linked",
            "Nodes linked to the bridge now",
            self.nodes_linked.clone(),
        );
        r.register(
            "heartbeats",
            "Node heartbeats posted to the controller",
            self.heartbeats.clone(),
        );
        r.register(
            "meter_frames",
            "Meter frames posted to the controller",
            self.meter_frames.clone(),
        );
        r.register(
            "health_events",
            "Health events posted to the controller",
            self.health_events.clone(),
        );
        r.register(
            "config_pushes",
            "Node configurations pushed to agents",
            self.config_pushes.clone(),
        );
        r.register(
            "listen_chunks",
            "Listen chunks posted to the controller",
            self.listen_chunks.clone(),
        );
        r.register(
            "jobs_running",
            "Recording jobs the bridge runs now",
            self.jobs_running.clone(),
        );
        r.register(
            "lease_renewals",
            "Job lease heartbeats posted to the controller",
            self.lease_renewals.clone(),
        );
        r.register(
            "uploads",
            "Chunk and file uploads (failed: tried again)",
            self.uploads.clone(),
        );
        r.register(
            "delivered_bytes",
            "Bytes of audio the controller accepted",
            self.bytes_delivered.clone(),
        );
        r.register(
            "delivery_seconds",
            "Seconds from a chunk ready to its 201 (render and upload)",
            self.delivery_seconds.clone(),
        );
        r.register(
            "enrollments",
            "Enrollments by Rakkr node token",
            self.enrollments.clone(),
        );
        r
    }

    /// The Prometheus text of every figure.
    pub fn encode(self: &Arc<Self>) -> String {
        let mut out = String::new();
        // NOTE: writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

/// `/healthz` and `/metrics`.
pub fn routes(m: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get({
                let m = m.clone();
                move || async move {
                    axum::Json(serde_json::json!({
                        "status": "ok",
                        "nodesLinked": m.nodes_linked.get(),
                    }))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
                    .into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_exported_with_their_outcome() {
        let m = Arc::new(Metrics::default());
        m.nodes_linked.set(3);
        Metrics::ok(&m.heartbeats, true);
        Metrics::ok(&m.heartbeats, true);
        Metrics::ok(&m.heartbeats, false);
        let text = m.encode();
        assert!(text.contains("rakkr_bridge_nodes_linked 3"), "{text}");
        assert!(
            text.contains("rakkr_bridge_heartbeats_total{outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rakkr_bridge_heartbeats_total{outcome=\"failed\"} 1"),
            "{text}"
        );
    }
}
