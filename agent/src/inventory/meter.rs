//! A meter frame in the controller's shape (see
//! docs/controller-contract.md, "Meter frames"):
//! `{ capturedAt, interfaceId, nodeId, levels: [{ channelIndex, label,
//! peakDbfs, rmsDbfs, clipping, quality? }] }`, camelCase, levels in dBFS
//! within [-160, 24], a label on every level, `quality` absent (never
//! `null`) when not measured. The wire frame stays compact (postcard); this
//! is what `meter --json` prints and what a controller's HTTP API takes.

use rakkr_protocol::{Level, MeterFrame, Quality};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    pub captured_at: String,
    pub interface_id: String,
    pub node_id: String,
    pub levels: Vec<FrameLevel>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameLevel {
    pub channel_index: u16,
    pub label: String,
    pub peak_dbfs: f32,
    pub rms_dbfs: f32,
    pub clipping: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<FrameQuality>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameQuality {
    pub crest_factor_db: f32,
    pub noise_score: f32,
    pub speech_like: bool,
    pub speech_score: f32,
    pub zero_crossing_rate: f32,
}

/// `frame` from node `node_id`, channel `n` labelled `label(n)` (an empty
/// label becomes `Input n`: the controller requires one).
pub fn controller_frame(frame: &MeterFrame, node_id: &str, label: impl Fn(u16) -> String) -> Frame {
    let captured = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(frame.captured_at_ms) * 1_000_000,
    )
    .ok()
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default();
    Frame {
        captured_at: captured,
        interface_id: frame.interface_id.clone(),
        node_id: node_id.to_owned(),
        levels: frame.levels.iter().map(|l| level(l, &label)).collect(),
    }
}

/// `x` within [lo, hi]; NaN (nothing measured) reads as `lo`.
fn within(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() { lo } else { x.clamp(lo, hi) }
}

fn level(l: &Level, label: &impl Fn(u16) -> String) -> FrameLevel {
    let db = |x: f32| within(x, -160.0, 24.0);
    let name = label(l.channel_index);
    FrameLevel {
        channel_index: l.channel_index.max(1),
        label: if name.trim().is_empty() {
            format!("Input {}", l.channel_index)
        } else {
            name
        },
        peak_dbfs: db(l.peak_dbfs),
        rms_dbfs: db(l.rms_dbfs),
        clipping: l.clipping,
        quality: l.quality.as_ref().map(quality),
    }
}

fn quality(q: &Quality) -> FrameQuality {
    let score = |x: f32| within(x, 0.0, 1.0);
    FrameQuality {
        crest_factor_db: within(q.crest_factor_db, 0.0, 80.0),
        noise_score: score(q.noise_score),
        speech_like: q.speech_like,
        speech_score: score(q.speech_score),
        zero_crossing_rate: score(q.zero_crossing_rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_takes_the_controllers_keys_ranges_and_labels() {
        let f = MeterFrame {
            captured_at_ms: 1_780_000_000_123,
            interface_id: "alsa_pcm_x32file".into(),
            levels: vec![
                Level {
                    channel_index: 1,
                    peak_dbfs: f32::NEG_INFINITY,
                    rms_dbfs: -200.0,
                    clipping: false,
                    quality: None,
                },
                Level {
                    channel_index: 2,
                    peak_dbfs: 0.5,
                    rms_dbfs: -12.0,
                    clipping: true,
                    quality: Some(Quality {
                        crest_factor_db: 95.0,
                        zero_crossing_rate: 0.1,
                        noise_score: f32::NAN,
                        speech_score: 0.4,
                        speech_like: false,
                    }),
                },
            ],
        };
        let v = serde_json::to_value(controller_frame(&f, "node-1", |n| {
            if n == 1 { "Kick".into() } else { String::new() }
        }))
        .unwrap();
        assert_eq!(v["capturedAt"], "2026-05-28T20:26:40.123Z");
        assert_eq!(v["interfaceId"], "alsa_pcm_x32file");
        assert_eq!(v["nodeId"], "node-1");
        let l = &v["levels"];
        assert_eq!(l[0]["label"], "Kick");
        assert_eq!(l[0]["peakDbfs"], -160.0);
        assert_eq!(l[0]["rmsDbfs"], -160.0);
        assert!(l[0].get("quality").is_none(), "absent, never null");
        assert_eq!(l[1]["label"], "Input 2");
        assert_eq!(l[1]["clipping"], true);
        assert_eq!(l[1]["quality"]["crestFactorDb"], 80.0);
        assert_eq!(l[1]["quality"]["noiseScore"], 0.0);
        assert_eq!(l[1]["quality"]["speechLike"], false);
    }
}
