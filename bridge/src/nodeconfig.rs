//! The Rakkr controller's node config (`GET /nodes/{id}/config`), polled
//! every tick, as our agent's pushed configuration (`Configure`, see
//! PROTOCOL.md §5.7): only what the agent lets a controller set.
//!
//! | Rakkr | agent |
//! |---|---|
//! | `audioDefaults.captureDevice` / `captureChannels` / `captureSampleRate` / `captureFormat` | `capture.device` / `channels` / `sample_rate` / `format` |
//! | `recordingCapacity.maxConcurrentRecordings` (1-128) | `capture.max_takes` (1-16, clamped) |
//! | `recorderCachePolicies[]`: `deleteAfterUpload` / `maxAgeDays` | `retention.delete_received_after_hours` (0 / days × 24; the soonest) |
//! | `maxBytes` / `minFreeDiskPercent` | `retention.max_takes_mb` (the least) / `retention.min_free_percent` (the most, 1-90) |
//!
//! Refused, and reported as a health event (`agent.config.refused`): a
//! capture command or argument template (`captureCommand`,
//! `captureArgsTemplate`, `meterArgsTemplate`: this agent runs no program
//! a controller names) and a `captureBackend` other than `alsa`.
//!
//! NOTE: our retention deletes only what the controller has received;
//! a Rakkr age or size limit never deletes audio not yet delivered.

use serde_json::{Map, Value, json};

/// The agent's document for `config` (the API's `data`), and the keys
/// refused with why.
pub fn translate(config: &Value) -> (Value, Vec<(String, &'static str)>) {
    let mut capture = Map::new();
    let mut retention = Map::new();
    let mut refused = Vec::new();
    let audio = &config["audioDefaults"];
    for (theirs, ours) in [
        ("captureDevice", "device"),
        ("captureChannels", "channels"),
        ("captureSampleRate", "sample_rate"),
        ("captureFormat", "format"),
    ] {
        if let Some(v) = audio.get(theirs).filter(|v| !v.is_null()) {
            capture.insert(ours.into(), v.clone());
        }
    }
    for key in ["captureCommand", "captureArgsTemplate", "meterArgsTemplate"] {
        if audio.get(key).is_some_and(|v| !v.is_null()) {
            refused.push((
                format!("audioDefaults.{key}"),
                "this agent runs no program or arguments a controller names; it captures through ALSA itself",
            ));
        }
    }
    if audio["captureBackend"]
        .as_str()
        .is_some_and(|b| b != "alsa")
    {
        refused.push((
            "audioDefaults.captureBackend".into(),
            "this agent captures through ALSA only",
        ));
    }
    if let Some(n) = config["recordingCapacity"]["maxConcurrentRecordings"].as_u64() {
        capture.insert("max_takes".into(), json!(n.clamp(1, 16)));
    }
    let policies = config["recorderCachePolicies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let soonest = policies
        .iter()
        .filter_map(|p| {
            if p["deleteAfterUpload"].as_bool() == Some(true) {
                Some(0)
            } else {
                p["maxAgeDays"].as_u64().map(|d| d * 24)
            }
        })
        .min();
    if let Some(h) = soonest {
        retention.insert("delete_received_after_hours".into(), json!(h));
    }
    if let Some(b) = policies.iter().filter_map(|p| p["maxBytes"].as_u64()).min() {
        retention.insert("max_takes_mb".into(), json!((b >> 20).max(1)));
    }
    if let Some(p) = policies
        .iter()
        .filter_map(|p| p["minFreeDiskPercent"].as_u64())
        .filter(|p| *p > 0)
        .max()
    {
        retention.insert("min_free_percent".into(), json!(p.clamp(1, 90)));
    }
    let mut doc = Map::new();
    for (name, section) in [("capture", capture), ("retention", retention)] {
        if !section.is_empty() {
            doc.insert(name.into(), Value::Object(section));
        }
    }
    (Value::Object(doc), refused)
}

/// What a node's config poll last led to: the document pushed and the
/// keys refused (so each is sent once, not every tick).
#[derive(Debug, Default)]
pub struct Poll {
    pushed: Option<Value>,
    refused: Vec<String>,
}

impl Poll {
    /// Polls `node`'s config and pushes what changed; reports refusals.
    pub async fn tick(
        &mut self,
        api: &crate::api::RakkrApi,
        handle: &rakkr_controller::ControllerHandle,
        node: &str,
        token: &str,
        metrics: &crate::metrics::Metrics,
    ) {
        let path = api.node_path(node, "config");
        let config = match api.call("GET", &path, token, None).await {
            Ok((200, body)) => body["data"].clone(),
            other => {
                tracing::debug!(%node, answer = ?other, "node config not read this tick");
                return;
            }
        };
        let (doc, refused) = translate(&config);
        let keys: Vec<String> = refused.iter().map(|(k, _)| k.clone()).collect();
        if keys != self.refused {
            self.report(api, node, token, &refused).await;
            self.refused = keys;
        }
        if self.pushed.as_ref() == Some(&doc) {
            return;
        }
        // NOTE: the time as the version: it increases across bridge
        // restarts too, and the agent takes the same document again as a
        // no-op.
        let push = rakkr_protocol::settings::ConfigPush {
            version: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            document: doc.to_string(),
            force: false,
        };
        let sent = handle
            .command(
                node,
                rakkr_protocol::CommandBody::Configure(push),
                std::time::Duration::from_secs(30),
            )
            .await;
        match sent.map(|r| r.outcome) {
            Ok(rakkr_protocol::Outcome::Done(rakkr_protocol::Reply::Configured(a))) => {
                tracing::info!(%node, version = a.version, changed = ?a.changed, "node config pushed");
                crate::metrics::Metrics::ok(&metrics.config_pushes, true);
                self.pushed = Some(doc);
            }
            other => {
                crate::metrics::Metrics::ok(&metrics.config_pushes, false);
                tracing::warn!(%node, answer = ?other, "node config not taken; next tick again")
            }
        }
    }

    /// Says which keys are refused (or that none are any more).
    async fn report(
        &self,
        api: &crate::api::RakkrApi,
        node: &str,
        token: &str,
        refused: &[(String, &'static str)],
    ) {
        let raised = !refused.is_empty();
        let body = json!({
            "type": if raised { "agent.config.refused" } else { "agent.config.refused_recovered" },
            "severity": if raised { "warning" } else { "info" },
            "details": {
                "keys": refused.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                "reasons": refused.iter().map(|(_, why)| *why).collect::<Vec<_>>(),
            },
        });
        let path = api.node_path(node, "health-events");
        match api.call("POST", &path, token, Some(body)).await {
            Ok((201, _)) => {}
            other => tracing::warn!(%node, answer = ?other, "config refusal not reported"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_keys_pass_and_programs_are_refused() {
        let cfg = json!({
            "audioDefaults": {"captureDevice": "hw:CARD=X32,DEV=0", "captureChannels": 32,
                "captureCommand": "arecord", "captureBackend": "pipewire"},
            "recordingCapacity": {"maxConcurrentRecordings": 40},
            "recorderCachePolicies": [
                {"deleteAfterUpload": false, "maxAgeDays": 7, "maxBytes": 10_737_418_240u64,
                 "minFreeDiskPercent": 10, "policyId": "a"},
                {"deleteAfterUpload": false, "maxAgeDays": 2, "minFreeDiskPercent": 25, "policyId": "b"},
            ],
            "monitorEnhancement": {"engine": "deepfilternet3", "requested": false},
        });
        let (doc, refused) = translate(&cfg);
        assert_eq!(
            doc,
            json!({
                "capture": {"device": "hw:CARD=X32,DEV=0", "channels": 32, "max_takes": 16},
                "retention": {"delete_received_after_hours": 48, "max_takes_mb": 10_240,
                              "min_free_percent": 25},
            })
        );
        let keys: Vec<&str> = refused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "audioDefaults.captureCommand",
                "audioDefaults.captureBackend"
            ]
        );
        assert_eq!(
            translate(&json!({})).0,
            json!({}),
            "nothing set: an empty document"
        );
    }
}
