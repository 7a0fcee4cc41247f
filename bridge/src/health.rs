//! A node's health edges as the Rakkr controller stores them: each signal
//! raised or cleared maps one to one onto its `agent.*` type
//! (`HealthSignal::controller_type`: `agent.meter.clipping`, …,
//! `…_recovered` on the way back), with the measurement in `details`. The
//! body has only the keys the controller's strict schema allows.

use rakkr_protocol::health::HealthEvent;
use serde_json::{Value, json};

/// The `POST /nodes/{id}/health-events` body for `h`, which the node sent
/// as its event `seq` at `at_ms`.
pub fn event_json(h: &HealthEvent, seq: u64, at_ms: u64) -> Value {
    json!({
        // NOTE: the node's own event number: the controller keeps it as
        // the local id, so a repeat is recognisable.
        "id": format!("evt-{seq}"),
        "type": h.signal.controller_type(h.raised),
        "severity": if h.raised { h.severity.as_str() } else { "info" },
        "details": {
            "signal": h.signal.name(),
            "interfaceId": h.interface_id,
            "channels": h.channels,
            "value": h.value,
            "threshold": h.threshold,
            "observations": h.observations,
            "summary": h.summary,
        },
        "openedAt": crate::meters::iso_ms(at_ms),
    })
}

/// Posts `body` for `node` until the controller takes it or `patience`
/// runs out: backoff 1, 2, 4, … 30 s. An outage (the controller down, or
/// answering 401 while not ready) is waited out; a 400 or 403 (a body or
/// token it will never take) ends at once. Whether it was delivered.
pub async fn deliver(
    api: &crate::api::RakkrApi,
    metrics: &crate::metrics::Metrics,
    token: &str,
    node: &str,
    body: &Value,
    patience: std::time::Duration,
) -> bool {
    let path = api.node_path(node, "health-events");
    let until = tokio::time::Instant::now() + patience;
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match api.call("POST", &path, token, Some(body.clone())).await {
            Ok((201, _)) => {
                crate::metrics::Metrics::ok(&metrics.health_events, true);
                return true;
            }
            Ok((code @ (400 | 403), answer)) => {
                tracing::error!(%node, code, %answer, "health event refused by the controller");
                break;
            }
            other => tracing::warn!(%node, answer = ?other, "health event not delivered yet"),
        }
        if tokio::time::Instant::now() + wait > until {
            tracing::error!(%node, event = %body["type"], "health event not delivered: the controller did not take it in time");
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
    crate::metrics::Metrics::ok(&metrics.health_events, false);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_protocol::health::{HealthSignal, Severity};

    #[test]
    fn edges_map_onto_the_controller_s_types_both_ways() {
        let mut h = HealthEvent {
            signal: HealthSignal::Clipping,
            raised: true,
            severity: Severity::Warning,
            interface_id: "alsa_card_X32_dev_0".into(),
            channels: vec![3],
            value: -0.2,
            threshold: -1.0,
            observations: 3,
            summary: "channel 3 clips".into(),
        };
        let up = event_json(&h, 41, 1_765_051_200_000);
        assert_eq!(up["type"], "agent.meter.clipping");
        assert_eq!(up["severity"], "warning");
        assert_eq!(up["details"]["channels"], json!([3]));
        assert_eq!(up["openedAt"], "2025-12-06T20:00:00Z");
        h.raised = false;
        let down = event_json(&h, 42, 1_765_051_260_000);
        assert_eq!(down["type"], "agent.meter.clipping_recovered");
        assert_eq!(down["severity"], "info");
        let keys: Vec<&String> = up.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["details", "id", "openedAt", "severity", "type"]);
    }
}
