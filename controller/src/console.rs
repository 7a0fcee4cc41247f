//! The reference controller's console commands for takes (its stdin):
//! `take start NODE TAKE [--channels 1,2,17-24] [--format flac|wav|w64]
//! [--segment 10s] [--duration 30s] [--pre-roll 2s] [--job ID] [--in 5m]
//! [--until-in 1h]` (start / end so long from now),
//! `take stop NODE TAKE`, `take mark NODE LABEL`, `takes NODE`.

use rakkr_protocol::{CommandBody, TakeFormat, TakeRequest};

/// `take …` (the words after `take`): the node and the command, or what
/// is wrong.
pub fn take(words: &str) -> Result<(String, CommandBody), String> {
    let mut w = words.split_whitespace();
    let usage = "usage: take start NODE TAKE [--channels 1,2,17-24] [--format flac|wav|w64] [--segment 10s] [--duration 30s] [--pre-roll 2s] [--job ID] | take stop NODE TAKE | take mark NODE LABEL";
    let (Some(verb), Some(node), Some(arg)) = (w.next(), w.next(), w.next()) else {
        return Err(usage.into());
    };
    let body = match verb {
        "start" => CommandBody::StartTakeWith(start(arg, &mut w)?),
        "stop" => CommandBody::StopTake {
            take_id: arg.into(),
        },
        "mark" => CommandBody::Mark {
            label: std::iter::once(arg).chain(w).collect::<Vec<_>>().join(" "),
        },
        _ => return Err(usage.into()),
    };
    Ok((node.to_owned(), body))
}

fn start<'a>(take_id: &str, w: &mut impl Iterator<Item = &'a str>) -> Result<TakeRequest, String> {
    let mut req = TakeRequest {
        take_id: take_id.into(),
        channels: Vec::new(),
        format: None,
        segment_seconds: 0,
        pre_roll_ms: 0,
        duration_ms: 0,
        job_id: String::new(),
        start_at_ms: 0,
        end_at_ms: 0,
    };
    while let Some(flag) = w.next() {
        let value = w.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--channels" => req.channels = rakkr_protocol::takes::parse_channels(value)?,
            "--format" => {
                req.format = Some(match value {
                    "flac" => TakeFormat::Flac,
                    "wav" => TakeFormat::Wav,
                    "w64" => TakeFormat::W64,
                    other => return Err(format!("format {other:?}: flac, wav or w64")),
                })
            }
            "--segment" => {
                req.segment_seconds = u32::try_from(millis(value)? / 1000)
                    .map_err(|_| format!("segment {value:?} is too long"))?
            }
            "--duration" => req.duration_ms = millis(value)?,
            "--pre-roll" => {
                req.pre_roll_ms = u32::try_from(millis(value)?)
                    .map_err(|_| format!("pre-roll {value:?} is too long"))?
            }
            "--job" => req.job_id = value.into(),
            // In so long from now (the controller's clock).
            "--in" => req.start_at_ms = now_ms() + millis(value)?,
            "--until-in" => req.end_at_ms = now_ms() + millis(value)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(req)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `30s`, `1500ms`, `10m`, `2h` (or plain seconds) as milliseconds.
fn millis(v: &str) -> Result<u64, String> {
    let (n, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{v:?} is not a duration like 30s, 1500ms, 10m or 2h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    };
    ms.ok_or_else(|| format!("{v:?} is not a duration like 30s, 1500ms, 10m or 2h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_start_with_every_option() {
        let (node, body) = take(
            "start node-a sermon --channels 1,2,17-18 --format wav --segment 10m --duration 30s --pre-roll 1500ms --job j-1",
        )
        .unwrap();
        assert_eq!(node, "node-a");
        assert_eq!(
            body,
            CommandBody::StartTakeWith(TakeRequest {
                take_id: "sermon".into(),
                channels: vec![1, 2, 17, 18],
                format: Some(TakeFormat::Wav),
                segment_seconds: 600,
                pre_roll_ms: 1500,
                duration_ms: 30_000,
                job_id: "j-1".into(),
                start_at_ms: 0,
                end_at_ms: 0,
            })
        );
    }

    #[test]
    fn stop_mark_and_mistakes() {
        assert_eq!(
            take("stop n t").unwrap().1,
            CommandBody::StopTake {
                take_id: "t".into()
            }
        );
        assert_eq!(
            take("mark n doors open").unwrap().1,
            CommandBody::Mark {
                label: "doors open".into()
            }
        );
        assert!(
            take("start n t --duration soon")
                .unwrap_err()
                .contains("duration")
        );
        assert!(
            take("start n t --channels")
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            take("start n t --colour red")
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(take("start n").unwrap_err().starts_with("usage"));
    }
}
