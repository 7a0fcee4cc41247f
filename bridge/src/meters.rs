//! A node's meter frame as the Rakkr controller takes it: `nodeId`,
//! `interfaceId`, `capturedAt` (ISO), and per channel its level with the
//! channel's label — from the node's inventory (`interfaces[].channels[]
//! .alias` of that interface), else `Ch N`. At most 512 levels.

use rakkr_protocol::MeterFrame;
use serde_json::{Value, json};

/// The label of channel `index` (1-based) of `interface` in `inventory`.
fn label(inventory: &Value, interface: &str, index: u16) -> String {
    inventory["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i["id"] == interface))
        .and_then(|i| i["channels"].as_array())
        .and_then(|chs| chs.iter().find(|c| c["index"] == index))
        .and_then(|c| c["alias"].as_str())
        .filter(|a| !a.is_empty())
        .map_or_else(|| format!("Ch {index}"), str::to_owned)
}

/// `ms` since the epoch as the controller's ISO date-time.
pub fn iso_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn frame_json(node: &str, frame: &MeterFrame, inventory: &Value) -> Value {
    let levels: Vec<Value> = frame
        .levels
        .iter()
        .take(rakkr_protocol::MAX_METER_LEVELS)
        .map(|l| {
            let mut v = json!({
                "channelIndex": l.channel_index,
                "label": label(inventory, &frame.interface_id, l.channel_index),
                "peakDbfs": l.peak_dbfs.clamp(-160.0, 24.0),
                "rmsDbfs": l.rms_dbfs.clamp(-160.0, 24.0),
                "clipping": l.clipping,
            });
            if let Some(q) = &l.quality {
                v["quality"] = json!({
                    "crestFactorDb": q.crest_factor_db.clamp(0.0, 80.0),
                    "zeroCrossingRate": q.zero_crossing_rate.clamp(0.0, 1.0),
                    "noiseScore": q.noise_score.clamp(0.0, 1.0),
                    "speechScore": q.speech_score.clamp(0.0, 1.0),
                    "speechLike": q.speech_like,
                });
            }
            v
        })
        .collect();
    json!({
        "nodeId": node,
        "interfaceId": frame.interface_id,
        "capturedAt": iso_ms(frame.captured_at_ms),
        "levels": levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_protocol::Level;

    #[test]
    fn levels_carry_the_inventory_s_channel_labels() {
        let inv = json!({"interfaces": [{"id": "alsa_card_X32_dev_0",
            "channels": [{"index": 1, "alias": "Kick"}, {"index": 2, "alias": ""}]}]});
        let level = |i| Level {
            channel_index: i,
            peak_dbfs: -200.0,
            rms_dbfs: -20.0,
            clipping: false,
            quality: None,
        };
        let frame = MeterFrame {
            captured_at_ms: 1_765_051_200_000,
            interface_id: "alsa_card_X32_dev_0".into(),
            levels: vec![level(1), level(2), level(3)],
        };
        let v = frame_json("node_a", &frame, &inv);
        let labels: Vec<&str> = v["levels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["Kick", "Ch 2", "Ch 3"]);
        assert_eq!(v["levels"][0]["peakDbfs"], -160.0, "clamped to the shape");
        assert_eq!(v["capturedAt"], "2025-12-06T20:00:00Z");
        assert_eq!(v["nodeId"], "node_a");
    }
}
