//! FLAC's STREAMINFO MD5 — of a file's samples as 24-bit little-endian
//! bytes — computed for many files at once, beside their encoders.
//!
//! NOTE: MD5 chains one 64-byte block to the next, so one stream runs no
//! faster than ~570 MB/s here, and FFmpeg's FLAC encoder hashing its own
//! channel was about a fifth of the writer's CPU on 32 mono files. The files
//! of a segment get their samples in lockstep, so their hashes run side by
//! side in SIMD lanes instead (md5-many: 16 lanes with AVX-512, 8 with AVX2,
//! 4 with SSE or NEON; ~9 GB/s for 32 streams on this host). Our FFmpeg
//! build has an encoder option to leave the MD5 out
//! (`packaging/ffmpeg-patches/0006-flacenc-md5-option.patch`); with a stock
//! FFmpeg, which hashes anyway, the encoder's MD5 is checked against ours.
//!
//! Byte layout (RFC 9639, sections 8.1–8.2): `fLaC`, then the STREAMINFO
//! block first: 1 byte last-flag|type 0, 24-bit BE length 34, and its body
//! from offset 8, whose last 16 bytes (file offsets 26..42) are the MD5;
//! all zero means "unknown".
//!
//! Threads: a `SampleMd5` belongs to its file's writer and lives on
//! whichever thread encodes that file; `update_together` runs on it too.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use md5_many::{Md5Many, Md5State};

/// File offset of the STREAMINFO MD5.
const MD5_AT: u64 = 26;

/// Streams hashed per SIMD batch (the widest native width; more go in
/// further batches).
const BATCH: usize = 16;

/// Bytes a stream may hold back before it hashes them alone (only a writer
/// fed outside `update_together` gets there).
const PENDING_MAX: usize = 1 << 20;

fn engine() -> Md5Many {
    static ENGINE: OnceLock<Md5Many> = OnceLock::new();
    // NOTE: detects the CPU's SIMD level once per process.
    *ENGINE.get_or_init(Md5Many::new)
}

/// The running MD5 of one file's samples, with the bytes not hashed yet.
#[derive(Debug)]
pub struct SampleMd5 {
    state: Md5State,
    pending: Vec<u8>,
}

impl SampleMd5 {
    /// For a writer that hands the encoder `frames` samples at a time.
    pub fn new(frames: usize) -> Self {
        Self {
            state: Md5State::new(),
            pending: Vec::with_capacity(frames * 3),
        }
    }

    /// Appends left-justified 24-in-32-bit samples as the 24-bit
    /// little-endian bytes FLAC hashes; hashed by the next
    /// `update_together`.
    pub fn push(&mut self, samples: &[i32]) {
        let start = self.pending.len();
        self.pending.resize(start + samples.len() * 3, 0);
        let out = &mut self.pending[start..];
        // Four samples make three little-endian words.
        let mut quads = samples.chunks_exact(4);
        let mut dst = out.chunks_exact_mut(12);
        for (q, d) in quads.by_ref().zip(dst.by_ref()) {
            let [a, b, c, e] = [q[0], q[1], q[2], q[3]].map(|s| (s >> 8) as u32 & 0x00FF_FFFF);
            d[0..4].copy_from_slice(&(a | b << 24).to_le_bytes());
            d[4..8].copy_from_slice(&(b >> 8 | c << 16).to_le_bytes());
            d[8..12].copy_from_slice(&(c >> 16 | e << 8).to_le_bytes());
        }
        let tail = &mut out[(samples.len() / 4) * 12..];
        for (s, d) in quads.remainder().iter().zip(tail.chunks_exact_mut(3)) {
            d.copy_from_slice(&(s >> 8).to_le_bytes()[..3]);
        }
        if self.pending.len() >= PENDING_MAX {
            self.state.update(&self.pending);
            self.pending.clear();
        }
    }

    /// The digest of every sample pushed.
    pub fn finish(mut self) -> [u8; 16] {
        self.state.update(&self.pending);
        self.pending.clear();
        self.state.finalize()
    }
}

/// Hashes what each of `all` holds back, up to `BATCH` streams per SIMD
/// pass.
pub fn update_together<'a>(all: impl IntoIterator<Item = &'a mut SampleMd5>) {
    let engine = engine();
    let mut rest = all.into_iter().filter(|m| !m.pending.is_empty());
    loop {
        let mut group: [Option<&mut SampleMd5>; BATCH] = Default::default();
        let mut n = 0;
        for (slot, m) in group.iter_mut().zip(rest.by_ref()) {
            *slot = Some(m);
            n += 1;
        }
        if n == 0 {
            return;
        }
        let mut states = [Md5State::new(); BATCH];
        let mut inputs: [&[u8]; BATCH] = [&[]; BATCH];
        for ((s, i), m) in states
            .iter_mut()
            .zip(&mut inputs)
            .zip(group.iter().flatten())
        {
            *s = m.state;
            *i = &m.pending;
        }
        engine.update_many(&mut states[..n], &inputs[..n]);
        for (s, m) in states.iter().zip(group.iter_mut().flatten()) {
            m.state = *s;
            m.pending.clear();
        }
    }
}

/// What `store` found in the file's STREAMINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It was zero ("unknown": the encoder left it to us); ours is there now.
    Written,
    /// The encoder had computed it, and it equals ours.
    Matched,
}

/// Puts `digest` into the STREAMINFO of the closed FLAC file at `path`, or
/// checks it against the one the encoder wrote there.
pub fn store(path: &Path, digest: [u8; 16]) -> anyhow::Result<Stored> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} for its MD5", path.display()))?;
    let mut head = [0u8; 42];
    f.read_exact_at(&mut head, 0)
        .with_context(|| format!("reading the STREAMINFO of {}", path.display()))?;
    if &head[..4] != b"fLaC" || head[4] & 0x7F != 0 || head[5..8] != [0, 0, 34] {
        bail!(
            "{} does not start with a FLAC STREAMINFO block; its MD5 was not written",
            path.display()
        );
    }
    let stored = &head[MD5_AT as usize..];
    if stored == digest {
        return Ok(Stored::Matched);
    }
    if stored.iter().any(|&b| b != 0) {
        bail!(
            "{}: the encoder's STREAMINFO MD5 {} differs from the agent's {} (the encoder's is kept)",
            path.display(),
            hex::encode(stored),
            hex::encode(digest)
        );
    }
    f.write_all_at(&digest, MD5_AT)
        .with_context(|| format!("writing the MD5 into {}", path.display()))?;
    Ok(Stored::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FLAC's MD5 input for `samples`, byte by byte, the obvious way.
    fn packed(samples: &[i32]) -> Vec<u8> {
        samples
            .iter()
            .flat_map(|s| {
                let v = s >> 8;
                [v as u8, (v >> 8) as u8, (v >> 16) as u8]
            })
            .collect()
    }

    fn samples(seed: u64, n: usize) -> Vec<i32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| rng.i32(-(1 << 23)..(1 << 23)) << 8)
            .collect()
    }

    #[test]
    fn packing_gives_the_24_bit_little_endian_bytes_of_each_sample() {
        for n in [0, 1, 2, 3, 4, 5, 7, 8, 4607, 4608] {
            let s = samples(n as u64, n);
            let mut m = SampleMd5::new(n);
            m.push(&s);
            assert_eq!(m.pending, packed(&s), "{n} samples");
        }
        let mut m = SampleMd5::new(4);
        m.push(&[i32::MIN, i32::MAX & !0xFF, -256, 256]);
        assert_eq!(
            m.pending,
            [0, 0, 0x80, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 1, 0, 0]
        );
    }

    #[test]
    fn streams_hashed_together_equal_each_hashed_alone() {
        // 37 streams (more than two batches), pieces of uneven sizes, some
        // streams skipping some rounds: each digest is the plain MD5 of
        // everything it was given, in order.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut ours: Vec<SampleMd5> = (0..37).map(|_| SampleMd5::new(4608)).collect();
        let mut all: Vec<Vec<u8>> = vec![Vec::new(); 37];
        for round in 0..40 {
            for (i, (m, bytes)) in ours.iter_mut().zip(&mut all).enumerate() {
                if (i + round) % 5 == 0 {
                    continue;
                }
                let n = if round % 3 == 0 {
                    4608
                } else {
                    rng.usize(0..5000)
                };
                let s = samples(rng.u64(..), n);
                bytes.extend(packed(&s));
                m.push(&s);
            }
            update_together(ours.iter_mut());
            assert!(ours.iter().all(|m| m.pending.is_empty()));
        }
        for (m, bytes) in ours.into_iter().zip(&all) {
            assert_eq!(m.finish(), md5_reference(bytes));
        }
    }

    #[test]
    fn a_stream_never_batched_still_hashes_everything() {
        let mut m = SampleMd5::new(16);
        let mut bytes = Vec::new();
        for k in 0..200 {
            let s = samples(k, 3001);
            bytes.extend(packed(&s));
            m.push(&s); // passes PENDING_MAX on the way: hashed alone
        }
        assert!(m.pending.len() < PENDING_MAX);
        assert_eq!(m.finish(), md5_reference(&bytes));
    }

    /// RFC 1321 MD5 through the RustCrypto implementation.
    fn md5_reference(bytes: &[u8]) -> [u8; 16] {
        use md5_reference::Digest;
        md5_reference::Md5::digest(bytes).into()
    }

    #[test]
    fn the_reference_agrees_with_rfc_1321() {
        assert_eq!(
            hex::encode(md5_reference(b"message digest")),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
    }

    fn flac_head(md5: [u8; 16]) -> Vec<u8> {
        let mut h = b"fLaC".to_vec();
        h.extend([0x80, 0, 0, 34]);
        h.extend([0x12; 18]);
        h.extend(md5);
        h.extend([0xFF, 0xF8, 0x69]); // a frame follows
        h
    }

    #[test]
    fn store_writes_an_unknown_md5_and_checks_a_known_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.flac");
        let d = md5_reference(b"abc");
        std::fs::write(&p, flac_head([0; 16])).unwrap();
        assert_eq!(store(&p, d).unwrap(), Stored::Written);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            flac_head(d),
            "only the MD5 changed"
        );
        assert_eq!(store(&p, d).unwrap(), Stored::Matched);
        let other = md5_reference(b"abd");
        let e = format!("{:#}", store(&p, other).unwrap_err());
        assert!(e.contains("differs") && e.contains(&hex::encode(d)), "{e}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            flac_head(d),
            "the encoder's kept"
        );
    }

    #[test]
    fn store_refuses_a_file_that_is_not_flac() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let mut bytes = b"RIFF".to_vec();
        bytes.resize(64, 0);
        std::fs::write(&p, &bytes).unwrap();
        let e = format!("{:#}", store(&p, [1; 16]).unwrap_err());
        assert!(e.contains("STREAMINFO"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing written");
    }
}
