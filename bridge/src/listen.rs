//! Live listen for the Rakkr web console: the controller keeps each node's
//! newest chunk (a WAV of about a second, 16 kHz mono 16-bit) and the
//! browser plays it. The bridge keeps the node's listen stream running
//! (every channel mixed to mono by the agent at 16 kHz, renewed within its
//! lease) and posts the last second each tick, as Rakkr's own agent does.
//!
//! Bounds: a node's buffer holds at most [`KEEP`] samples (one second);
//! older samples fall off.

use std::collections::VecDeque;

use rakkr_protocol::listen::{ListenFrame, ListenRequest};

/// Samples kept per node: one second at 16 kHz.
pub const KEEP: usize = 16_000;
pub const RATE: u32 = 16_000;

/// What the bridge asks of a node's listen stream.
pub fn request() -> ListenRequest {
    ListenRequest {
        channels: Vec::new(),
        rate: RATE,
        frame_ms: 100,
    }
}

/// A node's newest second of listen audio.
#[derive(Debug, Default)]
pub struct Buffer {
    samples: VecDeque<i16>,
    /// Capture time (agent clock, ms) of the newest sample's frame end.
    end_ms: u64,
    /// Whether samples came since the last chunk was taken.
    fresh: bool,
}

impl Buffer {
    pub fn push(&mut self, f: &ListenFrame) {
        if f.rate != RATE {
            return;
        }
        let n = f.pcm.len() / 2;
        self.samples.extend(
            f.pcm
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        while self.samples.len() > KEEP {
            self.samples.pop_front();
        }
        self.end_ms = f.captured_at_ms + (n as u64 * 1000) / u64::from(RATE);
        self.fresh = true;
    }

    /// The chunk to post, if new audio came: the WAV, when its first
    /// sample was captured (ms), and its length (ms).
    pub fn take(&mut self) -> Option<(Vec<u8>, u64, u64)> {
        if !self.fresh || self.samples.is_empty() {
            return None;
        }
        self.fresh = false;
        let n = self.samples.len();
        let ms = (n as u64 * 1000 / u64::from(RATE)).max(1);
        let pcm: Vec<i16> = self.samples.iter().copied().collect();
        Some((wav(&pcm), self.end_ms.saturating_sub(ms), ms))
    }
}

/// A RIFF/WAVE file of 16-bit mono PCM at [`RATE`].
pub fn wav(pcm: &[i16]) -> Vec<u8> {
    let data = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, at: u64, value: i16, n: usize) -> ListenFrame {
        ListenFrame {
            seq,
            captured_at_ms: at,
            rate: RATE,
            pcm: std::iter::repeat_n(value.to_le_bytes(), n)
                .flatten()
                .collect(),
        }
    }

    #[test]
    fn the_newest_second_goes_out_once_as_a_wav() {
        let mut b = Buffer::default();
        assert!(b.take().is_none(), "nothing yet");
        for i in 0..15u64 {
            b.push(&frame(i + 1, 1_000 + i * 100, i as i16, 1_600));
        }
        let (wav, first_ms, ms) = b.take().unwrap();
        assert_eq!(ms, 1_000, "a second kept");
        assert_eq!(first_ms, 1_000 + 15 * 100 - 1_000);
        assert_eq!(wav.len(), 44 + 32_000);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);
        // The oldest sample kept is frame 6's (value 5).
        assert_eq!(i16::from_le_bytes([wav[44], wav[45]]), 5);
        assert!(b.take().is_none(), "sent once");
    }
}
