//! Renders a job's deliverable from the take's files with FFmpeg's
//! libraries (ffmpeg-next): each device channel's mono files (one per
//! segment) are decoded in turn, the job's outputs made from them (see
//! `plan`), and the result encoded as 24-bit FLAC, 24-bit WAV or MP3.
//!
//! Streaming, a block of [`BLOCK`] frames at a time: a take of hours is
//! never held in memory. A mean of several channels is taken on the
//! 24-bit values and rounded half away from zero, so it is exact and
//! reproducible ([`mean`]); one channel passes through bit for bit.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use ffmpeg_next::{codec, format, frame, media};

use super::encode::Writer;

use super::plan::Plan;

/// Frames per block.
const BLOCK: usize = 4096;

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

/// The mean of left-justified 24-bit samples, rounded half away from zero
/// at 24 bits, left-justified again.
pub fn mean(samples: impl Iterator<Item = i32>, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let sum: i64 = samples.map(|s| i64::from(s >> 8)).sum();
    let n = n as i64;
    let q = if sum >= 0 {
        (sum + n / 2) / n
    } else {
        (sum - n / 2) / n
    };
    (q as i32) << 8
}

/// One mono file, decoded on demand.
struct Decoded {
    path: PathBuf,
    input: format::context::Input,
    decoder: ffmpeg_next::decoder::Audio,
    stream: usize,
    frame: frame::Audio,
    flushed: bool,
}

impl Decoded {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let input = format::input(path).with_context(|| format!("opening {}", path.display()))?;
        let stream = input
            .streams()
            .best(media::Type::Audio)
            .ok_or_else(|| anyhow!("{} holds no audio", path.display()))?;
        let decoder = codec::context::Context::from_parameters(stream.parameters())
            .and_then(|c| c.decoder().audio())
            .with_context(|| format!("a decoder for {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            stream: stream.index(),
            input,
            decoder,
            frame: frame::Audio::empty(),
            flushed: false,
        })
    }

    /// Appends the next decoded samples to `out`; `false` at the end.
    fn more(&mut self, out: &mut VecDeque<i32>) -> anyhow::Result<bool> {
        // Bounded: each turn consumes a packet or ends.
        loop {
            if self.decoder.receive_frame(&mut self.frame).is_ok() {
                let f = &self.frame;
                if f.channels() != 1 || !matches!(f.format(), format::Sample::I32(_)) {
                    bail!(
                        "{} is not mono 32-bit-decoded audio ({} channels, {:?})",
                        self.path.display(),
                        f.channels(),
                        f.format()
                    );
                }
                out.extend(&f.plane::<i32>(0)[..f.samples()]);
                return Ok(true);
            }
            if self.flushed {
                return Ok(false);
            }
            match self.input.packets().next() {
                Some((s, p)) if s.index() == self.stream => self
                    .decoder
                    .send_packet(&p)
                    .with_context(|| format!("decoding {}", self.path.display()))?,
                Some(_) => {}
                None => {
                    self.flushed = true;
                    self.decoder
                        .send_eof()
                        .with_context(|| format!("decoding {}", self.path.display()))?;
                }
            }
        }
    }
}

/// A device channel: its files in order, read as one stream.
struct Channel {
    files: VecDeque<PathBuf>,
    current: Option<Decoded>,
    buf: VecDeque<i32>,
}

impl Channel {
    /// Buffers up to `n` samples; how many there are.
    fn fill(&mut self, n: usize) -> anyhow::Result<usize> {
        while self.buf.len() < n {
            if self.current.is_none() {
                match self.files.pop_front() {
                    Some(p) => self.current = Some(Decoded::open(&p)?),
                    None => break,
                }
            }
            let d = self.current.as_mut().expect("opened above");
            if !d.more(&mut self.buf)? {
                self.current = None;
            }
        }
        Ok(self.buf.len().min(n))
    }
}

/// What a render made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub frames: u64,
    pub bytes: u64,
}

/// Renders `plan`'s outputs from `files` (device channel → its mono files
/// in order) into `out`. A channel shorter than the others (the open
/// segment of a take cut by a crash) is padded with silence.
pub fn render(
    plan: &Plan,
    files: &BTreeMap<u16, Vec<PathBuf>>,
    out: &Path,
) -> anyhow::Result<Rendered> {
    init();
    let mut channels: BTreeMap<u16, Channel> = BTreeMap::new();
    for d in &plan.device_channels {
        let f = files
            .get(d)
            .ok_or_else(|| anyhow!("no file of device channel {d}"))?;
        channels.insert(
            *d,
            Channel {
                files: f.iter().cloned().collect(),
                current: None,
                buf: VecDeque::new(),
            },
        );
    }
    let mut w = Writer::create(out, plan.codec, plan.outputs.len(), plan.sample_rate)?;
    let mut row = vec![0i32; plan.outputs.len()];
    let mut frames = 0u64;
    // Bounded: each block consumes samples, or ends.
    loop {
        let mut n = 0;
        for ch in channels.values_mut() {
            n = n.max(ch.fill(BLOCK)?);
        }
        if n == 0 {
            break;
        }
        for i in 0..n {
            for (o, sources) in plan.outputs.iter().enumerate() {
                let at = |d: &u16| channels[d].buf.get(i).copied().unwrap_or(0);
                row[o] = match sources.as_slice() {
                    [one] => at(one),
                    many => mean(many.iter().map(at), many.len()),
                };
            }
            w.push(&row)?;
        }
        for ch in channels.values_mut() {
            let k = n.min(ch.buf.len());
            ch.buf.drain(..k);
        }
        frames += n as u64;
    }
    w.finish()?;
    let bytes = std::fs::metadata(out)
        .with_context(|| format!("reading {}", out.display()))?
        .len();
    Ok(Rendered { frames, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_controller::sim::decode::interleaved_i32;

    /// A 24-bit sample no other channel or frame has.
    fn sample(ch: u16, n: u64) -> i32 {
        let v = ((i32::from(ch) << 17) | (n as i32 & 0x1ffff)) - (1 << 22);
        v << 8
    }

    /// Mono FLAC files of device channels `chs`, segments of `lens` frames.
    fn inputs(dir: &Path, chs: &[u16], lens: &[u64]) -> BTreeMap<u16, Vec<PathBuf>> {
        let mut out = BTreeMap::new();
        for &ch in chs {
            let mut at = 0;
            for (s, len) in lens.iter().enumerate() {
                let p = dir.join(format!("{ch:02}-s{s:03}.flac"));
                let mut w = Writer::create(&p, Codec::Flac, 1, 48_000).unwrap();
                for n in at..at + len {
                    w.push(&[sample(ch, n)]).unwrap();
                }
                w.finish().unwrap();
                at += len;
                out.entry(ch).or_insert_with(Vec::new).push(p);
            }
        }
        out
    }

    fn plan(outputs: Vec<Output>, codec: Codec) -> Plan {
        let mut device_channels: Vec<u16> = outputs.iter().flatten().copied().collect();
        device_channels.sort_unstable();
        device_channels.dedup();
        Plan {
            device_channels,
            outputs,
            codec,
            sample_rate: 48_000,
            duration_seconds: 1,
            chunk_seconds: Some(1),
            file_name: "t.flac".into(),
        }
    }

    use super::super::plan::{Codec, Output};

    #[test]
    fn mixes_are_exact_and_single_channels_pass_bit_for_bit_in_flac_and_wav() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path(), &[3, 5, 7], &[10_000, 5_001]);
        for codec in [Codec::Flac, Codec::Wav] {
            let p = plan(vec![vec![5], vec![3, 5, 7], vec![7]], codec);
            let out = dir.path().join(format!("out.{}", codec.extension()));
            let r = render(&p, &files, &out).unwrap();
            assert_eq!(r.frames, 15_001);
            let (ch, got) = interleaved_i32(&out);
            assert_eq!((ch, got.len()), (3, 3 * 15_001));
            for n in 0..15_001u64 {
                let row = &got[n as usize * 3..n as usize * 3 + 3];
                let mix = mean([3, 5, 7].iter().map(|c| sample(*c, n)), 3);
                assert_eq!(
                    row,
                    [sample(5, n), mix, sample(7, n)],
                    "{codec:?} frame {n}"
                );
            }
        }
    }

    #[test]
    fn mp3_carries_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path(), &[1], &[48_000]);
        // A 1 kHz tone in channel 2 instead of the counting pattern.
        let tone = dir.path().join("tone.flac");
        let mut w = Writer::create(&tone, Codec::Flac, 1, 48_000).unwrap();
        let at = |n: usize| ((n as f64 * 2.0 * std::f64::consts::PI / 48.0).sin() * 4e6) as i32;
        for n in 0..48_000 {
            w.push(&[at(n) << 8]).unwrap();
        }
        w.finish().unwrap();
        let mut files = files;
        files.insert(2, vec![tone]);
        let p = plan(
            vec![vec![2], vec![2]],
            Codec::Mp3 {
                kbps: 192,
                vbr: false,
            },
        );
        let out = dir.path().join("out.mp3");
        render(&p, &files, &out).unwrap();
        let (ch, got) = rakkr_controller::sim::decode::interleaved_f64(&out);
        assert_eq!(ch, 2);
        let want: Vec<f64> = (0..40_000).map(|n| f64::from(at(n))).collect();
        for side in 0..2 {
            let got: Vec<f64> = got.iter().skip(side).step_by(2).copied().collect();
            let best = rakkr_controller::sim::decode::best_correlation(&want, &got, 4096);
            assert!(best > 0.99, "channel {side}: correlation {best}");
        }
    }
}
