//! The bridge's calls against the fake Rakkr controller over real HTTP.

#![allow(clippy::unwrap_used)]

mod outage {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use rakkr_bridge::api::{RakkrApi, TokenVerdict};
    use rakkr_bridge::metrics::Metrics;
    use rakkr_fake_api::{FakeRakkr, Options};

    /// Waits (bounded) until the fake has answered `n` requests with 401.
    async fn refused(fake: &FakeRakkr, n: u64) {
        for _ in 0..1_000 {
            if fake.with(|s| s.unauthorized.load(Ordering::Relaxed)) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the bridge never asked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_health_edge_waits_out_a_database_outage_and_is_delivered() {
        let fake = FakeRakkr::start(Options::default()).await.unwrap();
        let token = fake.enroll("node_a");
        let api = RakkrApi::new(&fake.url());
        let metrics = std::sync::Arc::new(Metrics::default());
        fake.set_ready(false);
        let body = serde_json::json!({"type": "agent.meter.flatline", "severity": "critical",
            "details": {"signal": "flatline"}});
        let task = {
            let (api, metrics, token, body) =
                (api.clone(), metrics.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                rakkr_bridge::health::deliver(
                    &api,
                    &metrics,
                    &token,
                    "node_a",
                    &body,
                    Duration::from_secs(300),
                )
                .await
            })
        };
        // The controller's database is down: every token looks invalid, yet
        // the bridge neither gives up nor calls the token bad.
        refused(&fake, 2).await;
        assert_eq!(
            api.check_token("node_a", &token).await,
            TokenVerdict::Unavailable("the controller is not ready".into())
        );
        fake.set_ready(true);
        assert!(
            tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .unwrap()
                .unwrap()
        );
        fake.with(|s| assert_eq!(s.nodes["node_a"].health_events.len(), 1));
        assert!(
            metrics
                .encode()
                .contains("rakkr_bridge_health_events_total{outcome=\"ok\"} 1")
        );
        assert_eq!(api.check_token("node_a", &token).await, TokenVerdict::Valid);
        assert_eq!(
            api.check_token("node_a", "rakkr_node_x").await,
            TokenVerdict::Invalid
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_the_controller_refuses_is_not_retried() {
        let fake = FakeRakkr::start(Options::default()).await.unwrap();
        let token = fake.enroll("node_a");
        let api = RakkrApi::new(&fake.url());
        let metrics = Metrics::default();
        let bad = serde_json::json!({"type": "controller.nope", "severity": "info", "details": {}});
        let delivered = rakkr_bridge::health::deliver(
            &api,
            &metrics,
            &token,
            "node_a",
            &bad,
            Duration::from_secs(300),
        );
        // Bounded: a refusal ends it at once, not after the patience.
        let done = tokio::time::timeout(Duration::from_secs(60), delivered).await;
        assert_eq!(done.ok(), Some(false));
    }
}
