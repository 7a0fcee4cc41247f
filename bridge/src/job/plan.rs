//! A Rakkr job's command, read into what the bridge does with it: which
//! device channels the node records, how long, in what segments, and what
//! each output channel of the delivered file is made of (the job's
//! channel map) in which codec.
//!
//! Channel maps, as Rakkr's own agent renders them (its `pan` filters):
//! the included entries, ordered by output channel (else source channel);
//! `mono` is one channel, the mean of every entry; `mono_to_stereo_mix`
//! that mean on both sides; `stereo` the entries for outputs 1 and 2 (the
//! first two; right = left when there is one); `multichannel` output n the
//! entry for n (a channel nobody feeds is silent). Without a map the file
//! carries the selected channels in order. Source indices are 1-based
//! device channels.
//!
//! Bounds (the controller's own): at most 128 map entries, channel numbers
//! 1–512, a selection of at most 512 distinct channels.

use serde_json::Value;

/// Largest device channel number (Rakkr's selection bound).
pub const MAX_CHANNEL: u16 = 512;
/// Most channel-map entries (Rakkr's bound).
pub const MAX_ENTRIES: usize = 128;
/// Segment length of a job without `chunkSeconds` (delivered whole at the
/// end; segments only bound what one file on the node holds).
pub const UNCHUNKED_SEGMENT_SECONDS: u32 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Flac,
    Wav,
    Mp3 { kbps: u32, vbr: bool },
}

impl Codec {
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Flac => "audio/flac",
            Codec::Wav => "audio/wav",
            Codec::Mp3 { .. } => "audio/mpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Codec::Flac => "flac",
            Codec::Wav => "wav",
            Codec::Mp3 { .. } => "mp3",
        }
    }
}

/// One output channel: the mean of these device channels (empty: silence).
pub type Output = Vec<u16>;

/// What a job asks of the node and of the delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Device channels the take records, ascending.
    pub device_channels: Vec<u16>,
    pub outputs: Vec<Output>,
    pub codec: Codec,
    pub sample_rate: u32,
    pub duration_seconds: u32,
    /// `None`: one file at the end.
    pub chunk_seconds: Option<u32>,
    pub file_name: String,
}

impl Plan {
    /// Segment length of the take.
    pub fn segment_seconds(&self) -> u32 {
        self.chunk_seconds.unwrap_or(UNCHUNKED_SEGMENT_SECONDS)
    }
}

fn channel(v: &Value, what: &str) -> Result<u16, String> {
    v.as_u64()
        .filter(|c| (1..=u64::from(MAX_CHANNEL)).contains(c))
        .map(|c| c as u16)
        .ok_or_else(|| format!("{what} {v} is not a channel 1-{MAX_CHANNEL}"))
}

struct Entry {
    source: u16,
    output: Option<u16>,
}

fn entries(map: &Value) -> Result<Vec<Entry>, String> {
    let all = map["entries"]
        .as_array()
        .ok_or("channelMap.entries is missing")?;
    if all.len() > MAX_ENTRIES {
        return Err(format!(
            "channelMap has {} entries (at most {MAX_ENTRIES})",
            all.len()
        ));
    }
    let mut out = Vec::new();
    for e in all {
        if e["included"] == Value::Bool(false) {
            continue;
        }
        let source = channel(&e["sourceChannelIndex"], "sourceChannelIndex")?;
        let output = match &e["outputChannelIndex"] {
            Value::Null => None,
            v => Some(channel(v, "outputChannelIndex")?),
        };
        out.push(Entry { source, output });
    }
    out.sort_by_key(|e| e.output.unwrap_or(e.source));
    Ok(out)
}

/// The entry feeding output `n` (1-based): the one naming it, else the
/// n-th in order.
fn for_output(entries: &[Entry], n: u16) -> Option<u16> {
    entries
        .iter()
        .find(|e| e.output == Some(n))
        .or_else(|| entries.get(usize::from(n) - 1))
        .map(|e| e.source)
}

fn outputs(map: &Value) -> Result<Vec<Output>, String> {
    let e = entries(map)?;
    if e.is_empty() {
        return Err("channelMap includes no channel".into());
    }
    let all: Output = e.iter().map(|e| e.source).collect();
    Ok(
        match map["channelMode"].as_str().unwrap_or("multichannel") {
            "mono" => vec![all],
            "mono_to_stereo_mix" => vec![all.clone(), all],
            "stereo" => {
                let left = for_output(&e, 1).unwrap_or(e[0].source);
                let right = for_output(&e, 2).unwrap_or(left);
                vec![vec![left], vec![right]]
            }
            _ => {
                let n = e
                    .iter()
                    .filter_map(|e| e.output)
                    .max()
                    .unwrap_or(e.len() as u16);
                (1..=n)
                    .map(|o| for_output(&e, o).into_iter().collect())
                    .collect()
            }
        },
    )
}

fn codec(c: &Value) -> Result<Codec, String> {
    let name = c["outputCodec"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            c["outputFileName"]
                .as_str()
                .and_then(|n| n.rsplit_once('.'))
                .map(|(_, ext)| ext.to_owned())
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(match name.as_str() {
        "flac" => Codec::Flac,
        "mp3" => Codec::Mp3 {
            kbps: c["outputBitrateKbps"]
                .as_u64()
                .map_or(128, |k| k.clamp(8, 320) as u32),
            vbr: c["outputVbr"].as_bool().unwrap_or(false),
        },
        // Rakkr's default.
        _ => Codec::Wav,
    })
}

/// Reads a job's `command`.
pub fn plan(c: &Value) -> Result<Plan, String> {
    if c["type"].as_str().is_some_and(|t| t != "alsa_capture") {
        return Err(format!("job type {} is not alsa_capture", c["type"]));
    }
    let duration_seconds = c["durationSeconds"]
        .as_u64()
        .filter(|d| *d > 0 && *d <= u64::from(u32::MAX))
        .ok_or("durationSeconds is missing or not positive")? as u32;
    let outputs = if c["channelMap"].is_object() {
        outputs(&c["channelMap"])?
    } else if let Some(sel) = c["captureChannelSelection"].as_array() {
        if sel.is_empty() || sel.len() > usize::from(MAX_CHANNEL) {
            return Err("captureChannelSelection must hold 1-512 channels".into());
        }
        sel.iter()
            .map(|v| channel(v, "captureChannelSelection entry").map(|c| vec![c]))
            .collect::<Result<_, _>>()?
    } else {
        let n = channel(&c["captureChannels"], "captureChannels")?;
        (1..=n).map(|c| vec![c]).collect()
    };
    let mut device_channels: Vec<u16> = outputs.iter().flatten().copied().collect();
    device_channels.sort_unstable();
    device_channels.dedup();
    if device_channels.is_empty() {
        return Err("the job records no channel".into());
    }
    let codec = codec(c)?;
    let most = match codec {
        Codec::Mp3 { .. } => 2,
        // FLAC's own limit.
        Codec::Flac => 8,
        Codec::Wav => usize::from(MAX_CHANNEL),
    };
    if outputs.len() > most {
        return Err(format!(
            "{} carries at most {most} channels; this job makes {}",
            codec.extension(),
            outputs.len()
        ));
    }
    Ok(Plan {
        device_channels,
        outputs,
        codec,
        sample_rate: c["captureSampleRate"].as_u64().unwrap_or(48_000) as u32,
        duration_seconds,
        chunk_seconds: c["chunkSeconds"]
            .as_u64()
            .filter(|s| *s > 0)
            .map(|s| s.min(u64::from(u32::MAX)) as u32),
        file_name: c["outputFileName"]
            .as_str()
            .unwrap_or("recording")
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(mode: &str, entries: Value) -> Value {
        json!({"type": "alsa_capture", "captureChannels": 8, "durationSeconds": 20,
            "chunkSeconds": 5, "outputCodec": "flac", "outputFileName": "a.flac",
            "channelMap": {"channelMode": mode, "entries": entries, "sourceChannels": 8}})
    }

    fn e(src: u16, out: Option<u16>, included: bool) -> Value {
        json!({"sourceChannelIndex": src, "outputChannelIndex": out, "label": format!("ch{src}"), "included": included})
    }

    #[test]
    fn each_channel_mode_makes_rakkrs_outputs() {
        let es = json!([e(5, None, true), e(3, None, true), e(7, None, false)]);
        let p = plan(&map("mono", es.clone())).unwrap();
        assert_eq!(p.outputs, vec![vec![3, 5]]);
        assert_eq!(p.device_channels, vec![3, 5]);
        assert_eq!(
            plan(&map("mono_to_stereo_mix", es.clone()))
                .unwrap()
                .outputs,
            vec![vec![3, 5], vec![3, 5]]
        );
        assert_eq!(
            plan(&map("stereo", es)).unwrap().outputs,
            vec![vec![3], vec![5]]
        );
        let one = json!([e(4, None, true)]);
        assert_eq!(
            plan(&map("stereo", one)).unwrap().outputs,
            vec![vec![4], vec![4]]
        );
        let multi = json!([e(1, Some(3), true), e(2, Some(1), true)]);
        let p = plan(&map("multichannel", multi)).unwrap();
        assert_eq!(p.outputs, vec![vec![2], vec![1], vec![1]]);
    }

    #[test]
    fn without_a_map_the_selection_or_the_first_channels_are_delivered() {
        let c = json!({"captureChannels": 4, "captureChannelSelection": [9, 2],
            "durationSeconds": 10, "outputCodec": "wav", "outputFileName": "x.wav"});
        let p = plan(&c).unwrap();
        assert_eq!(p.outputs, vec![vec![9], vec![2]]);
        assert_eq!(p.device_channels, vec![2, 9]);
        assert_eq!((p.codec, p.chunk_seconds), (Codec::Wav, None));
        assert_eq!(p.segment_seconds(), UNCHUNKED_SEGMENT_SECONDS);
        let c = json!({"captureChannels": 2, "durationSeconds": 10, "outputFileName": "x.mp3",
            "outputBitrateKbps": 192});
        let p = plan(&c).unwrap();
        assert_eq!(p.outputs, vec![vec![1], vec![2]]);
        assert_eq!(
            p.codec,
            Codec::Mp3 {
                kbps: 192,
                vbr: false
            }
        );
    }

    #[test]
    fn bad_commands_are_refused_naming_what_is_wrong() {
        let c = json!({"captureChannels": 3, "durationSeconds": 10, "outputCodec": "mp3",
            "outputFileName": "x.mp3"});
        assert!(plan(&c).unwrap_err().contains("mp3 carries at most 2"));
        let c = json!({"captureChannels": 600, "durationSeconds": 10});
        assert!(plan(&c).unwrap_err().contains("not a channel 1-512"));
        let c = json!({"captureChannels": 2});
        assert!(plan(&c).unwrap_err().contains("durationSeconds"));
        let many: Vec<Value> = (0..129).map(|i| e(1 + i % 8, None, true)).collect();
        assert!(
            plan(&map("mono", Value::Array(many)))
                .unwrap_err()
                .contains("129 entries")
        );
        assert!(
            plan(&map("mono", json!([e(1, None, false)])))
                .unwrap_err()
                .contains("no channel")
        );
    }
}
