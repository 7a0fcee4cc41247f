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

mod bootstrap {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Output;

    use rakkr_fake_api::{FakeRakkr, Options};

    /// `rakkr-bridge node bootstrap` (the real binary) against `api`.
    async fn run(api: &str, dir: &Path, node: &str, token: &str) -> Output {
        let (api, dir, node, token) = (
            api.to_owned(),
            dir.to_owned(),
            node.to_owned(),
            token.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_rakkr-bridge"))
                .args(["node", "bootstrap", &node, "--ssh-private-key"])
                .arg(dir.join("id_ed25519"))
                .args(["--username", "rakkr"])
                .env_clear()
                .env("RAKKR_BRIDGE_CONFIG", dir.join("absent.toml"))
                .env("RAKKR_BRIDGE_API_URL", api)
                .env("RAKKR_BRIDGE_CREDENTIALS_DIR", dir.join("credentials"))
                .env("RAKKR_BOOTSTRAP_TOKEN", token)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    fn said(o: &Output) -> String {
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bootstrap_token_buys_the_node_token_kept_private_and_each_failure_has_its_code() {
        let fake = FakeRakkr::start(Options::default()).await.unwrap();
        let old = fake.enroll("node_a");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(
            &key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("id_ed25519.pub"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 rakkr@node-a\n",
        )
        .unwrap();
        // A private key others can read is refused before anything is sent.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let bs = fake.bootstrap_token("node_a");
        let o = run(&fake.url(), dir.path(), "node_a", &bs).await;
        assert_eq!(o.status.code(), Some(2), "{}", said(&o));
        assert!(said(&o).contains("chmod 600"), "{}", said(&o));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A node token is not a bootstrap token.
        let o = run(&fake.url(), dir.path(), "node_a", &old).await;
        assert_eq!(o.status.code(), Some(2), "{}", said(&o));
        assert!(said(&o).contains("rakkr_bs_"), "{}", said(&o));
        // Done: the new token kept (0600), the old one revoked, the key stored.
        let o = run(&fake.url(), dir.path(), "node_a", &bs).await;
        assert_eq!(o.status.code(), Some(0), "{}", said(&o));
        let kept = dir.path().join("credentials/node_a.token");
        let token = std::fs::read_to_string(&kept).unwrap();
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fake.with(|s| {
            let n = &s.nodes["node_a"];
            assert_eq!(
                n.tokens,
                vec![token.clone()],
                "only the new token authenticates"
            );
            assert_eq!(
                n.ssh_public_key.as_deref(),
                Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 rakkr@node-a")
            );
        });
        // Used up: refused (4), and what is kept stays.
        let o = run(&fake.url(), dir.path(), "node_a", &bs).await;
        assert_eq!(o.status.code(), Some(4), "{}", said(&o));
        assert!(said(&o).contains("401"), "{}", said(&o));
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), token);
        // No controller there: 5.
        let o = run(
            "http://127.0.0.1:9",
            dir.path(),
            "node_a",
            &fake.bootstrap_token("node_a"),
        )
        .await;
        assert_eq!(o.status.code(), Some(5), "{}", said(&o));
    }
}
