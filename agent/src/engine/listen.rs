//! The live listen tap: a mono stream cut from the blocks the engine
//! already reads for the recording — never a second open of the device.
//! Runs on the engine thread after the take's write, one pass over each
//! block while a stream is asked for; nothing at all otherwise.
//!
//! Mono is the mean of the chosen channels (integer, truncating); a lower
//! rate is the capture decimated by an integer factor after a boxcar
//! low-pass (the mean of each group of `decimate` samples: nulls at the
//! output rate's multiples; a monitor, not a recording); samples are the
//! top 16 bits, signed little-endian. A frame is sent every `frame_ms`.

use std::time::Instant;

use rakkr_protocol::listen::LISTEN_LEASE_MS;
use rakkr_protocol::{ListenFrame, ListenRequest, Listening};

#[derive(Debug)]
pub struct Tap {
    /// 0-based capture channels mixed.
    channels: Vec<usize>,
    decimate: usize,
    rate: u32,
    capture_rate: u32,
    frame_samples: usize,
    pcm: Vec<u8>,
    acc: i64,
    acc_n: usize,
    seq: u64,
    /// Capture time of the first sample in `pcm`.
    first_at_ms: Option<u64>,
    until: Instant,
    listening: Listening,
}

impl Tap {
    /// A tap for `req` on a capture of `channels` channels at `rate`;
    /// `seq`: frames of the stream so far (a renewal keeps counting).
    pub fn new(
        req: &ListenRequest,
        channels: u16,
        capture_rate: u32,
        seq: u64,
    ) -> Result<(Self, Listening), String> {
        req.check(channels)?;
        if !capture_rate.is_multiple_of(req.rate) {
            return Err(format!(
                "listen at {} Hz: the capture runs at {capture_rate} Hz, not a multiple",
                req.rate
            ));
        }
        let mixed: Vec<u16> = if req.channels.is_empty() {
            (1..=channels).collect()
        } else {
            req.channels.clone()
        };
        let frame_samples = (req.rate as usize * req.frame_ms as usize / 1000).max(1);
        let tap = Tap {
            channels: mixed.iter().map(|c| usize::from(*c) - 1).collect(),
            decimate: (capture_rate / req.rate) as usize,
            rate: req.rate,
            capture_rate,
            frame_samples,
            pcm: Vec::with_capacity(frame_samples * 2),
            acc: 0,
            acc_n: 0,
            seq,
            first_at_ms: None,
            until: Instant::now() + std::time::Duration::from_millis(u64::from(LISTEN_LEASE_MS)),
            listening: Listening {
                channels: mixed,
                rate: req.rate,
                frame_samples: frame_samples as u32,
                lease_ms: LISTEN_LEASE_MS,
            },
        };
        let listening = tap.listening.clone();
        Ok((tap, listening))
    }

    /// The stream as it runs.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the lease ran out (no renewal in time).
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.until
    }

    /// Feeds interleaved frames (`ch` per frame) whose first was captured
    /// at `start_ms`; `emit` gets each completed frame.
    pub fn feed(
        &mut self,
        block: &[i32],
        ch: usize,
        start_ms: u64,
        emit: &mut dyn FnMut(ListenFrame),
    ) {
        let n = self.channels.len() as i64;
        for (k, frame) in block.chunks_exact(ch).enumerate() {
            if self.acc_n == 0 && self.pcm.is_empty() {
                self.first_at_ms =
                    Some(start_ms + (k as u64 * 1000) / u64::from(self.capture_rate));
            }
            let sum: i64 = self.channels.iter().map(|c| i64::from(frame[*c])).sum();
            self.acc += sum / n;
            self.acc_n += 1;
            if self.acc_n < self.decimate {
                continue;
            }
            let v = ((self.acc / self.decimate as i64) >> 16) as i16;
            self.acc = 0;
            self.acc_n = 0;
            self.pcm.extend_from_slice(&v.to_le_bytes());
            if self.pcm.len() == self.frame_samples * 2 {
                self.seq += 1;
                let pcm =
                    std::mem::replace(&mut self.pcm, Vec::with_capacity(self.frame_samples * 2));
                emit(ListenFrame {
                    seq: self.seq,
                    captured_at_ms: self.first_at_ms.take().unwrap_or(start_ms),
                    rate: self.rate,
                    pcm,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(channels: Vec<u16>, rate: u32, frame_ms: u32) -> ListenRequest {
        ListenRequest {
            channels,
            rate,
            frame_ms,
        }
    }

    fn samples(f: &ListenFrame) -> Vec<i16> {
        f.pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn mono_mix_of_chosen_channels_in_frames_of_the_asked_length() {
        let (mut tap, l) = Tap::new(&req(vec![1, 3], 48_000, 10), 3, 48_000, 0).unwrap();
        assert_eq!((l.frame_samples, l.channels.clone()), (480, vec![1, 3]));
        let block: Vec<i32> = (0..1000i32)
            .flat_map(|n| [n << 16, 7 << 16, (n + 2) << 16])
            .collect();
        let mut out = Vec::new();
        tap.feed(&block, 3, 1_000_000, &mut |f| out.push(f));
        assert_eq!(out.len(), 2, "two whole 10 ms frames of 1000 samples");
        assert_eq!(samples(&out[0])[..3], [1, 2, 3], "mean of channels 1 and 3");
        assert_eq!(samples(&out[1])[0], 481);
        assert_eq!((out[0].seq, out[1].seq), (1, 2));
        assert_eq!(out[0].captured_at_ms, 1_000_000);
        assert_eq!(out[1].captured_at_ms, 1_000_010, "480 frames later");
    }

    #[test]
    fn sixteen_khz_is_the_mean_of_each_three() {
        let (mut tap, l) = Tap::new(&req(vec![], 16_000, 10), 1, 48_000, 5).unwrap();
        assert_eq!(l.frame_samples, 160);
        let block: Vec<i32> = (0..480).map(|n| (n % 3) << 16).collect();
        let mut out = Vec::new();
        tap.feed(&block, 1, 0, &mut |f| out.push(f));
        assert_eq!(out.len(), 1);
        assert!(samples(&out[0]).iter().all(|s| *s == 1), "(0+1+2)/3");
        assert_eq!(out[0].seq, 6, "a renewal keeps counting");
    }

    #[test]
    fn a_rate_the_capture_cannot_give_is_refused() {
        let e = Tap::new(&req(vec![], 16_000, 50), 2, 44_100, 0).unwrap_err();
        assert!(e.contains("44100"), "{e}");
    }
}
