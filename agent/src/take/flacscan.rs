//! Finds the complete frames of a FLAC file whose writer died: walks the
//! frames from the first one, accepting a frame only when its header CRC-8
//! and its whole-frame CRC-16 check out, and reports where each ends and how
//! many samples it holds. A torn last frame fails its CRC-16 and is left out.
//!
//! Byte layout (https://xiph.org/flac/format.html): `fLaC`, metadata blocks
//! (1 byte last-flag|type, 24-bit BE length, body), then frames: sync
//! `FF F8` (fixed block size) or `FF F9`, block-size/rate codes, channel/
//! bits codes, UTF-8 coded frame number, optional explicit block size and
//! rate, CRC-8 over the header; subframes; CRC-16 over the whole frame.
//! STREAMINFO's 36-bit total sample count sits at bytes 21 (low nibble) to
//! 25 of the file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};

/// A complete frame: where it ends (file offset) and the sample count of
/// the file up to there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEnd {
    pub end: u64,
    pub samples: u64,
}

fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc16_update(mut crc: u16, b: u8) -> u16 {
    crc ^= u16::from(b) << 8;
    for _ in 0..8 {
        crc = if crc & 0x8000 != 0 {
            (crc << 1) ^ 0x8005
        } else {
            crc << 1
        };
    }
    crc
}

/// Parses a frame header at the start of `h`; returns its block size when
/// the header is well-formed and its CRC-8 matches.
fn header_block_size(h: &[u8]) -> Option<u64> {
    header(h).map(|(bs, _)| bs)
}

/// [`header_block_size`], and the header's length (CRC-8 included).
pub(super) fn header(h: &[u8]) -> Option<(u64, usize)> {
    if h.len() < 6 || h[0] != 0xFF || (h[1] & 0xFE) != 0xF8 {
        return None;
    }
    let bs_code = h[2] >> 4;
    let rate_code = h[2] & 0x0F;
    if bs_code == 0 || rate_code == 0x0F || (h[3] >> 4) > 10 || h[3] & 1 != 0 {
        return None;
    }
    // UTF-8 coded frame/sample number.
    let lead = h[4];
    let extra = match lead {
        0x00..=0x7F => 0,
        0xC0..=0xDF => 1,
        0xE0..=0xEF => 2,
        0xF0..=0xF7 => 3,
        0xF8..=0xFB => 4,
        0xFC..=0xFD => 5,
        0xFE => 6,
        _ => return None,
    };
    let mut i = 5 + extra;
    if h.len() < i + 3 || h[5..i].iter().any(|b| b & 0xC0 != 0x80) {
        return None;
    }
    let bs = match bs_code {
        1 => 192,
        2..=5 => 576 << (bs_code - 2),
        6 => {
            i += 1;
            u64::from(h[i - 1]) + 1
        }
        7 => {
            i += 2;
            u64::from(u16::from_be_bytes([h[i - 2], h[i - 1]])) + 1
        }
        _ => 256 << (bs_code - 8),
    };
    i += match rate_code {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    (h.len() > i && crc8(&h[..i]) == h[i]).then_some((bs, i + 1))
}

/// Where the metadata blocks end (the first frame starts).
fn metadata_end(f: &mut impl Read) -> anyhow::Result<u64> {
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .context("reading the FLAC marker")?;
    if &magic != b"fLaC" {
        bail!("not a FLAC file (no fLaC marker)");
    }
    let mut pos = 4u64;
    loop {
        let mut hdr = [0u8; 4];
        f.read_exact(&mut hdr)
            .context("reading a FLAC metadata block header")?;
        let len = u64::from(u32::from_be_bytes([0, hdr[1], hdr[2], hdr[3]]));
        std::io::copy(&mut f.take(len), &mut std::io::sink())?;
        pos += 4 + len;
        if hdr[0] & 0x80 != 0 {
            return Ok(pos);
        }
    }
}

/// Bytes of a reader from a moving start position: memory stays bounded
/// by the largest frame, however long the file is.
struct Window<R> {
    src: R,
    base: usize,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Makes bytes up to `end` (absolute) available if the file has them.
    fn fill(&mut self, end: usize) -> std::io::Result<()> {
        while !self.eof && self.base + self.buf.len() < end {
            let old = self.buf.len();
            self.buf.resize(old + (1 << 20), 0);
            let n = self.src.read(&mut self.buf[old..])?;
            self.buf.truncate(old + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.base + self.buf.len()
    }

    /// Up to `n` bytes from absolute position `at`.
    fn peek(&mut self, at: usize, n: usize) -> std::io::Result<&[u8]> {
        self.fill(at + n)?;
        let from = at - self.base;
        Ok(&self.buf[from.min(self.buf.len())..(from + n).min(self.buf.len())])
    }

    /// Forgets bytes before `at` once enough have piled up.
    fn release(&mut self, at: usize) {
        if at - self.base > (4 << 20) {
            self.buf.drain(..at - self.base);
            self.base = at;
        }
    }
}

/// Where the first frame starts, and every complete frame, in order.
pub fn scan_with_start(path: &Path) -> anyhow::Result<(u64, Vec<FrameEnd>)> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut r = std::io::BufReader::new(f);
    let start = metadata_end(&mut r)
        .with_context(|| format!("reading the metadata of {}", path.display()))?;
    let mut w = Window {
        src: r,
        base: start as usize,
        buf: Vec::new(),
        eof: false,
    };
    let frames = scan_frames(&mut w).with_context(|| format!("reading {}", path.display()))?;
    Ok((start, frames))
}

fn scan_frames<R: Read>(w: &mut Window<R>) -> std::io::Result<Vec<FrameEnd>> {
    let mut out = Vec::new();
    let mut p = w.base;
    let mut samples = 0u64;
    'frames: while let Some(bs) = header_block_size(w.peek(p, 16)?) {
        w.release(p);
        let mut crc = 0u16;
        let mut q = p;
        loop {
            let ahead = w.peek(q, 16)?;
            let Some(&b) = ahead.first() else { break };
            // A frame ends where the running CRC-16 is zero and a valid
            // header follows (or the file ends).
            if q > p + 6 && crc == 0 && header_block_size(ahead).is_some() {
                samples += bs;
                out.push(FrameEnd {
                    end: q as u64,
                    samples,
                });
                p = q;
                continue 'frames;
            }
            crc = crc16_update(crc, b);
            q += 1;
        }
        if crc == 0 && w.len() > p + 6 {
            samples += bs;
            out.push(FrameEnd {
                end: w.len() as u64,
                samples,
            });
        } else if let Some(end) = last_frame_end(w, p)? {
            // The last frame is followed by bytes that are not a frame
            // (garbage, damage): its own end, found by walking its
            // subframes and checked by its CRC-16, keeps it.
            samples += bs;
            out.push(FrameEnd {
                end: end as u64,
                samples,
            });
        }
        break;
    }
    Ok(out)
}

/// STREAMINFO's total sample count.
pub fn streaminfo_samples(path: &Path) -> anyhow::Result<u64> {
    let mut b = [0u8; 26];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .with_context(|| format!("reading the STREAMINFO of {}", path.display()))?;
    if &b[..4] != b"fLaC" {
        bail!("not a FLAC file (no fLaC marker)");
    }
    Ok((u64::from(b[21] & 0x0F) << 32)
        | u64::from(u32::from_be_bytes([b[22], b[23], b[24], b[25]])))
}

/// Where the frame at `p` ends when its subframes say so and its CRC-16
/// checks out there (see `flacframe`); `None` otherwise.
fn last_frame_end<R: Read>(w: &mut Window<R>, p: usize) -> std::io::Result<Option<usize>> {
    // A frame is at most a few hundred KiB (32-bit verbatim at 65535 samples).
    let bytes = w.peek(p, 1 << 20)?.to_vec();
    Ok(super::flacframe::frame_len(&bytes)
        .filter(|&len| bytes[..len].iter().fold(0u16, |c, b| crc16_update(c, *b)) == 0)
        .map(|len| p + len))
}

/// Cuts the file after `frame` and writes its sample count into
/// STREAMINFO (the MD5 stays zero: "unknown", as the format allows).
pub fn truncate_at(path: &Path, frame: FrameEnd) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_len(frame.end)
        .with_context(|| format!("truncating {}", path.display()))?;
    let mut b = [0u8; 5];
    f.seek(SeekFrom::Start(21))?;
    f.read_exact(&mut b)?;
    let n = frame.samples;
    b[0] = (b[0] & 0xF0) | ((n >> 32) & 0x0F) as u8;
    b[1..5].copy_from_slice(&((n & 0xFFFF_FFFF) as u32).to_be_bytes());
    f.seek(SeekFrom::Start(21))?;
    f.write_all(&b)?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_the_flac_reference_values() {
        // "123456789" check values of CRC-8/SMBUS (0x07) and CRC-16/UMTS (0x8005).
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(
            b"123456789".iter().fold(0, |c, b| crc16_update(c, *b)),
            0xFEE8
        );
    }

    #[test]
    fn garbage_has_no_frames() {
        for bytes in [&[0u8; 64][..], &[0xFF, 0xF8, 0x69, 0x08, 0x00][..]] {
            let mut w = Window {
                src: bytes,
                base: 0,
                buf: Vec::new(),
                eof: false,
            };
            assert!(scan_frames(&mut w).unwrap().is_empty());
        }
    }
}
