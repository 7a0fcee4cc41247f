//! The exact length of one FLAC frame, found by walking its subframes
//! without decoding them: what `flacscan` needs when a frame is followed
//! by bytes that are not a frame (garbage after a crash, damage), so that
//! no following header marks where it ends.
//!
//! Layout (https://xiph.org/flac/format.html): frame header (its length
//! from `flacscan::header`), then one subframe per channel, each:
//! 1 zero bit, 6 type bits, 1 wasted-bits flag (then a unary count);
//! CONSTANT: one sample; VERBATIM: block-size samples; FIXED (order 0-4)
//! and LPC (order 1-32): warm-up samples, LPC's 4-bit precision, 5-bit
//! shift and coefficients, then the residual: 2-bit method (Rice with
//! 4-bit or 5-bit parameters), 4-bit partition order, per partition a
//! parameter (all ones: escape, 5-bit raw width) and its Rice-coded or raw
//! samples. Then zero bits to a byte boundary and the CRC-16.

/// Longest unary run accepted (a Rice quotient this long is damage).
const MAX_UNARY: u64 = 1 << 20;

struct Bits<'a> {
    b: &'a [u8],
    /// Position in bits.
    pos: u64,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = *self.b.get((self.pos / 8) as usize)?;
        let v = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u64::from(v))
    }

    fn read(&mut self, n: u32) -> Option<u64> {
        (0..n).try_fold(0u64, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.pos = self.pos.checked_add(n)?;
        (self.pos <= self.b.len() as u64 * 8).then_some(())
    }

    /// Zeros before the next one bit.
    fn unary(&mut self) -> Option<u64> {
        let mut n = 0;
        while self.bit()? == 0 {
            n += 1;
            if n > MAX_UNARY {
                return None;
            }
        }
        Some(n)
    }
}

/// Bits per sample from the header's sample-size code (0: STREAMINFO's,
/// not handled here).
fn sample_bits(code: u8) -> Option<u32> {
    match code {
        1 => Some(8),
        2 => Some(12),
        4 => Some(16),
        5 => Some(20),
        6 => Some(24),
        7 => Some(32),
        _ => None,
    }
}

/// The length in bytes (CRC-16 included) of the frame at the start of
/// `b`, when its header and subframes are well-formed and within `b`.
pub fn frame_len(b: &[u8]) -> Option<usize> {
    let (block, header_len) = super::flacscan::header(b)?;
    let assignment = b[3] >> 4;
    let bps = sample_bits((b[3] >> 1) & 0x07)?;
    // Independent channels, or a stereo pair with one side channel (+1 bit).
    let (channels, side) = match assignment {
        0..=7 => (usize::from(assignment) + 1, None),
        8 | 10 => (2, Some(1)),
        9 => (2, Some(0)),
        _ => return None,
    };
    let mut bits = Bits {
        b,
        pos: header_len as u64 * 8,
    };
    for ch in 0..channels {
        let width = bps + u32::from(side == Some(ch));
        subframe(&mut bits, block, width)?;
    }
    let end = bits.pos.div_ceil(8) as usize + 2;
    (end <= b.len()).then_some(end)
}

fn subframe(bits: &mut Bits<'_>, block: u64, width: u32) -> Option<()> {
    if bits.bit()? != 0 {
        return None;
    }
    let kind = bits.read(6)?;
    let mut width = width;
    if bits.bit()? == 1 {
        let wasted = bits.unary()? + 1;
        width = width.checked_sub(u32::try_from(wasted).ok()?)?;
    }
    let w = u64::from(width);
    match kind {
        0 => bits.skip(w),
        1 => bits.skip(w.checked_mul(block)?),
        8..=12 => {
            let order = kind - 8;
            bits.skip(order * w)?;
            residual(bits, block, order)
        }
        32..=63 => {
            let order = (kind & 31) + 1;
            bits.skip(order * w)?;
            let precision = bits.read(4)?;
            if precision == 15 {
                return None;
            }
            bits.skip(5)?;
            bits.skip(order * (precision + 1))?;
            residual(bits, block, order)
        }
        _ => None,
    }
}

fn residual(bits: &mut Bits<'_>, block: u64, order: u64) -> Option<()> {
    let (param_bits, escape) = match bits.read(2)? {
        0 => (4, 15),
        1 => (5, 31),
        _ => return None,
    };
    let partition_order = bits.read(4)?;
    let per = block >> partition_order;
    if per << partition_order != block || per < order {
        return None;
    }
    for i in 0..(1u64 << partition_order) {
        let n = if i == 0 { per - order } else { per };
        let k = bits.read(param_bits)?;
        if k == escape {
            let raw = bits.read(5)?;
            bits.skip(n * raw)?;
        } else {
            for _ in 0..n {
                bits.unary()?;
                bits.skip(k)?;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::take::encoder::{Container, TrackWriter};
    use crate::take::flacscan;

    /// A mono 24-bit FLAC of silence, a sine, noise and a ramp: CONSTANT,
    /// FIXED, LPC and VERBATIM-like subframes.
    fn varied_flac(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("v.flac");
        let mut w = TrackWriter::create(&path, Container::Flac, 1, 48_000, "t", None).unwrap();
        let mut x = 12_345u32;
        let mut samples = Vec::new();
        for n in 0..60_000u32 {
            let v: i32 = match n / 15_000 {
                0 => 0,
                1 => ((f64::from(n) * 0.05).sin() * 4_000_000.0) as i32,
                2 => {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 8) as i32 - (1 << 23)
                }
                _ => (n as i32) * 97,
            };
            samples.push(v << 8);
        }
        w.write(&samples).unwrap();
        w.finish().unwrap();
        path
    }

    #[test]
    fn every_frame_of_a_real_file_has_the_length_its_subframes_give() {
        let dir = tempfile::tempdir().unwrap();
        let path = varied_flac(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let (start, frames) = flacscan::scan_with_start(&path).unwrap();
        assert!(frames.len() > 10);
        let mut p = start as usize;
        for f in &frames {
            assert_eq!(
                frame_len(&bytes[p..]),
                Some(f.end as usize - p),
                "frame at {p}"
            );
            p = f.end as usize;
        }
    }

    #[test]
    fn garbage_after_the_last_frame_costs_no_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = varied_flac(dir.path());
        let (_, whole) = flacscan::scan_with_start(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let mut x = 7u32;
        bytes.extend((0..5_000).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        }));
        let damaged = dir.path().join("d.flac");
        std::fs::write(&damaged, &bytes).unwrap();
        let (_, kept) = flacscan::scan_with_start(&damaged).unwrap();
        assert_eq!(kept, whole, "every frame kept, ending where it did");
        // A torn last frame is still dropped.
        let torn = dir.path().join("t.flac");
        let cut = whole[whole.len() - 1].end as usize - 100;
        std::fs::write(&torn, &std::fs::read(&path).unwrap()[..cut]).unwrap();
        let (_, left) = flacscan::scan_with_start(&torn).unwrap();
        assert_eq!(left.as_slice(), &whole[..whole.len() - 1]);
    }
}
