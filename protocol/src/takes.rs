//! Several takes at once from one capture (protocol version 3; PROTOCOL.md
//! §5.8): `StartTakeWith` starts a take on any set of device channels,
//! with its own format, segment length, pre-roll, duration and the job it
//! serves; `RunningTakes` lists every take recording.

use serde::{Deserialize, Serialize};

use crate::message::{TakeFormat, TakeInfo};

/// Most channels one take names.
pub const TAKE_CHANNELS_MAX: usize = 512;
/// Longest job id, bytes.
pub const JOB_ID_MAX: usize = 128;

/// `CommandBody::StartTakeWith`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeRequest {
    pub take_id: String,
    /// 1-based device channels, in the order the take records them
    /// (empty: every channel).
    pub channels: Vec<u16>,
    pub format: Option<TakeFormat>,
    /// 0: the node's setting.
    pub segment_seconds: u32,
    pub pre_roll_ms: u32,
    /// The take ends by itself after this long (0: when stopped), on the
    /// node, whether or not the link is up.
    pub duration_ms: u64,
    /// The controller's job this take serves (opaque, may be empty).
    pub job_id: String,
    /// Start at this time of the controller's clock (ms since the epoch;
    /// 0: now): in the past as far as the node's pre-roll reaches, in the
    /// future up to [`START_AHEAD_MAX_MS`] (the take is scheduled).
    pub start_at_ms: u64,
    /// End at this time of the controller's clock (0: by `duration_ms`,
    /// or when stopped).
    pub end_at_ms: u64,
}

/// Furthest ahead a start may be scheduled.
pub const START_AHEAD_MAX_MS: u64 = 24 * 3600 * 1000;

/// One take recording (or scheduled: `take.dir` empty, `take.started_at_ms`
/// when it starts, on the node's clock), as `RunningTakes` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTake {
    pub take: TakeInfo,
    /// 1-based device channels it records.
    pub device_channels: Vec<u16>,
    pub job_id: String,
    /// Frames after which it ends by itself (0: when stopped).
    pub duration_frames: u64,
}

/// Parses a channel list as operators write it: `1,2,17-24` (1-based,
/// ranges inclusive), at most [`TAKE_CHANNELS_MAX`] channels.
pub fn parse_channels(text: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s:?} in {text:?} is not a channel number (1 or more)"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(format!("{part:?}: a range goes up, e.g. 17-24"));
        }
        if out.len() + usize::from(b - a) + 1 > TAKE_CHANNELS_MAX {
            return Err(format!("{text:?}: more than {TAKE_CHANNELS_MAX} channels"));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(format!("{text:?} names no channel"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_lists_and_ranges() {
        assert_eq!(parse_channels("1,2,17-19").unwrap(), [1, 2, 17, 18, 19]);
        assert_eq!(parse_channels(" 5 ").unwrap(), [5]);
        assert!(parse_channels("0").unwrap_err().contains("not a channel"));
        assert!(parse_channels("4-2").unwrap_err().contains("goes up"));
        assert!(parse_channels("x").is_err());
        assert!(parse_channels("").unwrap_err().contains("no channel"));
        assert!(
            parse_channels("1-600")
                .unwrap_err()
                .contains("more than 512")
        );
    }
}
