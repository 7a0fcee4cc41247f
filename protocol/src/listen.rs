//! Live listen: a mono stream from the capture that feeds the recording
//! (never a second open of the device), for a controller to listen to a
//! room. Best effort: the agent drops frames rather than queue them, and
//! sends them only when nothing else waits on the link.
//!
//! The controller starts (or renews, or changes) a stream with
//! `CommandBody::Listen`; the agent answers `Reply::Listening` and sends
//! `AgentMsg::Listen` frames until `StopListen`, until [`LISTEN_LEASE_MS`]
//! pass without a renewal, or until the link drops.

use serde::{Deserialize, Serialize};

/// A stream stops by itself this long after the last `Listen` command.
pub const LISTEN_LEASE_MS: u32 = 30_000;
/// Rates a stream can have.
pub const LISTEN_RATES: [u32; 2] = [16_000, 48_000];
/// Frame length bounds, ms.
pub const LISTEN_FRAME_MS_MIN: u32 = 10;
pub const LISTEN_FRAME_MS_MAX: u32 = 100;
/// Most channels one stream mixes.
pub const LISTEN_CHANNELS_MAX: usize = 512;

/// What to listen to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenRequest {
    /// 1-based channels mixed to mono (their mean); empty: every channel.
    pub channels: Vec<u16>,
    /// 16 000 or 48 000 (the capture rate); 16 kHz is the capture
    /// low-passed and decimated by 3.
    pub rate: u32,
    /// Audio per frame, 10–100 ms.
    pub frame_ms: u32,
}

/// `Reply::Listening`: the stream as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listening {
    pub channels: Vec<u16>,
    pub rate: u32,
    /// Samples per frame.
    pub frame_samples: u32,
    /// It stops by itself this long after this command unless renewed.
    pub lease_ms: u32,
}

/// One frame of a listen stream: mono signed 16-bit little-endian PCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenFrame {
    /// Frames of this stream so far, this one included (a gap in `seq`
    /// is a frame dropped on the way).
    pub seq: u64,
    /// When its first sample was captured (agent clock, ms since the epoch).
    pub captured_at_ms: u64,
    pub rate: u32,
    #[serde(with = "serde_bytes")]
    pub pcm: Vec<u8>,
}

impl ListenRequest {
    /// Checks rate, frame length and channel count; `capture_channels`:
    /// what the device delivers.
    pub fn check(&self, capture_channels: u16) -> Result<(), String> {
        if !LISTEN_RATES.contains(&self.rate) {
            return Err(format!("listen rate {} Hz: use 16000 or 48000", self.rate));
        }
        if !(LISTEN_FRAME_MS_MIN..=LISTEN_FRAME_MS_MAX).contains(&self.frame_ms) {
            return Err(format!(
                "listen frame of {} ms: use {LISTEN_FRAME_MS_MIN}..={LISTEN_FRAME_MS_MAX}",
                self.frame_ms
            ));
        }
        if self.channels.len() > LISTEN_CHANNELS_MAX {
            return Err(format!(
                "{} listen channels; at most {LISTEN_CHANNELS_MAX}",
                self.channels.len()
            ));
        }
        if let Some(c) = self
            .channels
            .iter()
            .find(|c| **c == 0 || **c > capture_channels)
        {
            return Err(format!(
                "listen channel {c}: the device delivers channels 1..={capture_channels}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_named() {
        let ok = ListenRequest {
            channels: vec![1, 32],
            rate: 16_000,
            frame_ms: 100,
        };
        assert_eq!(ok.check(32), Ok(()));
        let e = |r: ListenRequest| r.check(32).unwrap_err();
        assert!(
            e(ListenRequest {
                rate: 44_100,
                ..ok.clone()
            })
            .contains("44100 Hz")
        );
        assert!(
            e(ListenRequest {
                frame_ms: 250,
                ..ok.clone()
            })
            .contains("250 ms")
        );
        assert!(
            e(ListenRequest {
                channels: vec![33],
                ..ok.clone()
            })
            .contains("channel 33")
        );
        assert!(
            e(ListenRequest {
                channels: vec![0],
                ..ok
            })
            .contains("channel 0")
        );
    }
}
