//! One mono FLAC file per channel, 24-bit, written with ffmpeg-next
//! (libavcodec's FLAC encoder, libavformat's FLAC muxer, which rewrites
//! STREAMINFO with the final sample count and MD5 when the file is closed).
//!
//! Input samples are left-justified `i32` (see `capture`); with
//! `bits_per_raw_sample = 24` the encoder stores their top 24 bits.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ffmpeg_next::{ChannelLayout, Packet, Rational, codec, encoder, format, frame};

pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

pub struct FlacWriter {
    path: PathBuf,
    octx: format::context::Output,
    enc: encoder::Audio,
    pending: Vec<i32>,
    frame_size: usize,
    rate: u32,
    pts: i64,
    samples: u64,
}

impl std::fmt::Debug for FlacWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlacWriter")
            .field("path", &self.path)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

#[allow(unsafe_code)]
fn set_bits_per_raw_sample(enc: &mut encoder::audio::Audio, bits: i32) {
    // SAFETY: the pointer is the encoder context ffmpeg-next owns; this
    // plain int field is read by avcodec_open2, which has not run yet.
    unsafe { (*enc.as_mut_ptr()).bits_per_raw_sample = bits };
}

impl FlacWriter {
    /// Creates `path` (which must not exist) for one channel at `rate` Hz.
    /// `title` ends up in the file's metadata.
    pub fn create(path: &Path, rate: u32, title: &str) -> anyhow::Result<Self> {
        init();
        let ctx = |what: &str| format!("{what} {}", path.display());
        let mut octx = format::output_as(path, "flac").with_context(|| ctx("creating"))?;
        let codec = encoder::find(codec::Id::FLAC)
            .ok_or_else(|| anyhow!("this FFmpeg has no FLAC encoder"))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .with_context(|| ctx("preparing the encoder for"))?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(ChannelLayout::MONO);
        enc.set_channels(1);
        enc.set_format(format::Sample::I32(format::sample::Type::Packed));
        enc.set_time_base(Rational::new(1, rate as i32));
        set_bits_per_raw_sample(&mut enc, 24);
        let enc = enc
            .open_as(codec)
            .with_context(|| ctx("opening the FLAC encoder for"))?;
        {
            let mut ost = octx
                .add_stream(codec)
                .with_context(|| ctx("adding a stream to"))?;
            ost.set_parameters(&enc);
            ost.set_time_base(Rational::new(1, rate as i32));
        }
        let mut meta = ffmpeg_next::Dictionary::new();
        meta.set("title", title);
        meta.set(
            "encoder",
            &format!("rakkr-recorder-agent {}", crate::build_info::VERSION),
        );
        octx.set_metadata(meta);
        octx.write_header()
            .with_context(|| ctx("writing the header of"))?;
        let frame_size = (enc.frame_size() as usize).max(1);
        Ok(Self {
            path: path.to_owned(),
            octx,
            enc,
            pending: Vec::with_capacity(frame_size * 2),
            frame_size,
            rate,
            pts: 0,
            samples: 0,
        })
    }

    /// Appends samples; encodes whole encoder frames as they fill.
    pub fn write(&mut self, samples: &[i32]) -> anyhow::Result<()> {
        self.pending.extend_from_slice(samples);
        self.samples += samples.len() as u64;
        while self.pending.len() >= self.frame_size {
            self.encode(self.frame_size)?;
        }
        Ok(())
    }

    fn encode(&mut self, n: usize) -> anyhow::Result<()> {
        let mut f = frame::Audio::new(
            format::Sample::I32(format::sample::Type::Packed),
            n,
            ChannelLayout::MONO,
        );
        f.set_rate(self.rate);
        f.plane_mut::<i32>(0)[..n].copy_from_slice(&self.pending[..n]);
        f.set_pts(Some(self.pts));
        self.pts += n as i64;
        self.pending.drain(..n);
        self.enc
            .send_frame(&f)
            .with_context(|| format!("encoding {}", self.path.display()))?;
        self.drain()
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let enc_tb = self.enc.time_base();
        let st_tb = self.octx.stream(0).map_or(enc_tb, |s| s.time_base());
        let mut pkt = Packet::empty();
        while self.enc.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(enc_tb, st_tb);
            pkt.write_interleaved(&mut self.octx)
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Flushes, writes the trailer (final STREAMINFO), syncs the file.
    pub fn finish(mut self) -> anyhow::Result<(PathBuf, u64)> {
        if !self.pending.is_empty() {
            self.encode(self.pending.len())?;
        }
        self.enc
            .send_eof()
            .with_context(|| format!("flushing {}", self.path.display()))?;
        self.drain()?;
        self.octx
            .write_trailer()
            .with_context(|| format!("closing {}", self.path.display()))?;
        drop(self.octx);
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", self.path.display()))?;
        Ok((self.path, self.samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a mono FLAC file back to left-justified i32 samples.
    pub(crate) fn decode(path: &Path) -> Vec<i32> {
        init();
        let mut ictx = format::input(path).unwrap();
        let stream = ictx
            .streams()
            .best(ffmpeg_next::media::Type::Audio)
            .unwrap();
        let idx = stream.index();
        let mut dec = codec::context::Context::from_parameters(stream.parameters())
            .unwrap()
            .decoder()
            .audio()
            .unwrap();
        let mut out = Vec::new();
        let mut f = frame::Audio::empty();
        for (s, pkt) in ictx.packets() {
            if s.index() == idx {
                dec.send_packet(&pkt).unwrap();
                while dec.receive_frame(&mut f).is_ok() {
                    out.extend_from_slice(&f.plane::<i32>(0)[..f.samples()]);
                }
            }
        }
        dec.send_eof().unwrap();
        while dec.receive_frame(&mut f).is_ok() {
            out.extend_from_slice(&f.plane::<i32>(0)[..f.samples()]);
        }
        out
    }

    #[test]
    fn flac_round_trip_is_bit_exact_for_24_bit_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ch01.flac");
        let mut w = FlacWriter::create(&path, 48_000, "Kick").unwrap();
        // 24-bit content in S32 containers, including both extremes, in odd-sized writes.
        let input: Vec<i32> = (0..10_007i64)
            .map(|n| (((n * 7919 % 16_777_216) - 8_388_608) as i32) << 8)
            .chain([i32::MIN, 0x7fff_ff00])
            .collect();
        for chunk in input.chunks(333) {
            w.write(chunk).unwrap();
        }
        let (p, n) = w.finish().unwrap();
        assert_eq!(n, input.len() as u64);
        assert_eq!(decode(&p), input);
    }
}
